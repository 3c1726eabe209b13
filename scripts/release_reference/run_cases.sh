#!/bin/bash
# Reference outputs for srlab's release fidelity mode. Run from /tmp/release_ref.
set -e
cd /tmp/release_ref
PY=venv/bin/python
M="--sd2 models/sd2 --ckpt models/ckpt --sam2-ckpt models/sam2_tiny.pt"
run() { case=$1; shift; rm -rf out/$case; mkdir -p out/$case; /usr/bin/time -f "$case: %e s wall" $PY run_release.py $M --images inputs/$case --out out/$case "$@" > out/$case/log.txt 2>&1; tail -1 out/$case/log.txt; }
[ -z "$1" -o "$1" = x4_lr ] && run x4_lr --seed 123 --upscale 4 --start_point lr --guidance_scale 0.9 \
  --added_prompt "clean, high-resolution, 8k" --steps 4 --process_size 128
[ -z "$1" -o "$1" = x1_noise ] && run x1_noise --seed 7 --upscale 1 --start_point noise --guidance_scale 8.5 \
  --added_prompt "clean, high-resolution, 8k, ultra-detailed, ultra-realistic" --steps 4 --process_size 128
[ -z "$1" -o "$1" = tiled ] && run tiled --seed 11 --upscale 1 --start_point noise --guidance_scale 8.5 \
  --added_prompt "clean, high-resolution, 8k, ultra-detailed, ultra-realistic" --steps 4 --process_size 128 \
  --latent_tiled_size 12 --latent_tiled_overlap 4
[ -z "$1" -o "$1" = tiled_vae ] && run tiled_vae --seed 5 --upscale 1 --start_point lr --guidance_scale 8.5 \
  --added_prompt "clean, high-resolution, 8k" --steps 4 --process_size 128 \
  --latent_tiled_size 12 --latent_tiled_overlap 4 --vae_encoder_tiled_size 64 --vae_decoder_tiled_size 8
[ -z "$1" -o "$1" = tiled_vae2 ] && run tiled_vae2 --seed 99 --upscale 1 --start_point lr --guidance_scale 0.9 \
  --added_prompt "clean, high-resolution, 8k" --steps 4 --process_size 128 \
  --latent_tiled_size 16 --latent_tiled_overlap 4 --vae_encoder_tiled_size 64 --vae_decoder_tiled_size 8
true
