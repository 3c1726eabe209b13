"""Run the authors' RELEASED inference code (Moonsofang/NTIRE-2025-SRlab @ cc4e44d, test_seesr_sam.py's
per-image flow) on CPU in fp32, to make reference outputs for srlab's "release" fidelity mode.

Run with the release venv (diffusers 0.21.0, transformers 4.37.2, accelerate 1.0.1, pillow 10.4.0 shadowing
srlab's; torch/torchvision/sam2 from /work/main/.venv):

  /tmp/release_ref/venv/bin/python /tmp/release_ref/run_release.py --sd2 models/sd2 --ckpt models/ckpt \
      --images inputs/x4_lr --out out/x4_lr --seed 123 ...

What is the released code, imported unchanged from /tmp/release_ref/src (git archive of the release):
  pipelines/pipeline_seesr.py StableDiffusionControlNetPipeline (incl. _init_tiled_vae, latent tiling),
  models/unet_2d_condition.py UNet2DConditionModel, models/controlnet.py ControlNetModel,
  utils/vaehook.py (tiled VAE), utils/wavelet_color_fix.py (adain / wavelet),
  sam2/sam2/sam2_image_predictor.py SAM2ImagePredictor.generate_image_embedding (their SAM2 fork's method).
What this file replicates from test_seesr_sam.py (lines cited): model loading (84-152, minus xformers and
fp16), seeding (207-209, 225-227), the per-image loop (229-295): prompt, c_sem, resizes, pipeline call,
colour fix, resize back, save.

Deviations (all listed in README.md):
  * CPU, fp32: no Accelerator(mixed_precision="fp16"), no torch.autocast("cuda"); generator is
    torch.Generator("cpu") (the release: a CUDA generator, whose stream differs).
  * no xformers (the release raises without it): the UNet/ControlNet use diffusers' default attention.
  * no RAM: tags = "" (so the prompt is f", {prompt}," + added_prompt).
  * SAM2: the tiny random SAM2 of srlab (built by the installed sam2 package's build_sam2 from a config +
    hydra overrides, weights from --sam2-ckpt); the transform is the release's with the model's image_size
    S instead of 1024, and antialias=False passed explicitly (torchvision 0.15 tensor Resize did not
    antialias; torchvision >= 0.17 does by default).
  * global seeding: accelerate.utils.set_seed(seed) is called where the script calls it AND again just
    before the image loop (the release's RAM/SAM2 construction consumes the global RNG in between, which
    cannot be reproduced without RAM; the global RNG feeds only the 'lr' start's posterior sample and
    torch.randint). --global_reseed start keeps only the first call.
  * shim: utils.devices.device is set to cpu (vaehook's GroupNorm summary allocates on devices.device,
    hard-coded to cuda).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
sys.path.insert(0, str(SRC))

import torch  # noqa: E402
import utils.devices as devices  # noqa: E402  (the release's)
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

devices.device = torch.device("cpu")  # SHIM: hard-coded torch.device("cuda") (utils/devices.py:68)

from accelerate.utils import set_seed  # noqa: E402
from diffusers import AutoencoderKL, DDPMScheduler  # noqa: E402
from models.controlnet import ControlNetModel  # noqa: E402  (the release's)
from models.unet_2d_condition import UNet2DConditionModel  # noqa: E402
from pipelines.pipeline_seesr import StableDiffusionControlNetPipeline  # noqa: E402
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer  # noqa: E402
from utils.wavelet_color_fix import adain_color_fix, wavelet_color_fix  # noqa: E402

DEFAULT_SAM2_OVERRIDES = [
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.memory_attention.num_layers=1",
]


def load_pipeline(args):
    """test_seesr_sam.py:84-152 on CPU fp32 without xformers."""
    scheduler = DDPMScheduler.from_pretrained(args.sd2, subfolder="scheduler")
    text_encoder = CLIPTextModel.from_pretrained(args.sd2, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(args.sd2, subfolder="tokenizer")
    vae = AutoencoderKL.from_pretrained(args.sd2, subfolder="vae")
    feature_extractor = CLIPImageProcessor.from_pretrained(f"{args.sd2}/feature_extractor")
    unet = UNet2DConditionModel.from_pretrained(args.ckpt, subfolder="unet")
    controlnet = ControlNetModel.from_pretrained(args.ckpt, subfolder="controlnet")
    for m in (vae, text_encoder, unet, controlnet):
        m.requires_grad_(False)
    pipeline = StableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        feature_extractor=feature_extractor,
        unet=unet,
        controlnet=controlnet,
        scheduler=scheduler,
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipeline._init_tiled_vae(
        encoder_tile_size=args.vae_encoder_tiled_size, decoder_tile_size=args.vae_decoder_tiled_size
    )
    for m in (text_encoder, vae, unet, controlnet):
        m.to("cpu", dtype=torch.float32)
    return pipeline


def load_sam(args):
    """The tiny SAM2 (installed sam2 package's builder) wrapped in the release fork's SAM2ImagePredictor."""
    from sam2.build_sam import build_sam2

    sam2 = build_sam2(
        args.sam2_config,
        args.sam2_ckpt,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=list(args.sam2_override),
        apply_postprocessing=False,
    )
    spec = importlib.util.spec_from_file_location(
        "release_sam2_image_predictor", SRC / "sam2" / "sam2" / "sam2_image_predictor.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports sam2.modeling / sam2.utils: installed = fork modulo comments
    return mod.SAM2ImagePredictor(sam2), int(sam2.image_size)


def main(args):
    t_start = time.time()
    out_dir = Path(args.out)
    (out_dir / "txt").mkdir(parents=True, exist_ok=True)  # the release always makes txt/ (200-201)
    if args.seed is not None:
        set_seed(args.seed)  # test_seesr_sam.py:208-209
    pipeline = load_pipeline(args)
    sam_model, S = load_sam(args)
    tensor_transforms = transforms.Compose([transforms.ToTensor()])
    # test_seesr_sam.py:58-61 with S for 1024 and torchvision 0.15's tensor behaviour (no antialias)
    sam_transforms = transforms.Compose(
        [
            transforms.Resize((S, S), antialias=False),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    if args.seed is not None and args.global_reseed == "before_loop":
        set_seed(args.seed)  # see module docstring

    generator = torch.Generator(device="cpu")
    if args.seed is not None:
        generator.manual_seed(args.seed)
    image_names = sorted(glob.glob(f"{args.images}/*.*")) if os.path.isdir(args.images) else [args.images]

    log = []
    for image_idx, image_name in enumerate(image_names):
        t0 = time.time()
        print(f"================== process {image_idx} imgs... ===================")
        validation_image = Image.open(image_name).convert("RGB")
        tags = ""  # no RAM (get_validation_prompt: f"{res[0]}, {args.prompt},")
        validation_prompt = f"{tags}, {args.prompt},"
        validation_prompt += args.added_prompt
        negative_prompt = args.negative_prompt

        with torch.no_grad():  # (the release has no no_grad here: same values)
            lq = tensor_transforms(validation_image).unsqueeze(0).to("cpu")
            lq = sam_transforms(lq)
            sam_encoder_hidden_states = sam_model.generate_image_embedding(lq)

        stem = os.path.basename(image_name).split(".")[0]
        (out_dir / "txt" / f"{stem}.txt").write_text(validation_prompt)  # as --save_prompts (245-249)
        print(f"{validation_prompt}")

        ori_width, ori_height = validation_image.size
        rscale = args.upscale
        if ori_width < args.process_size // rscale or ori_height < args.process_size // rscale:
            scale = (args.process_size // rscale) / min(ori_width, ori_height)
            validation_image = validation_image.resize((int(scale * ori_width), int(scale * ori_height)))
        validation_image = validation_image.resize(
            (validation_image.size[0] * rscale, validation_image.size[1] * rscale)
        )
        validation_image = validation_image.resize(
            (validation_image.size[0] // 8 * 8, validation_image.size[1] // 8 * 8)
        )
        width, height = validation_image.size
        resize_flag = True
        print(f"input size: {height}x{width}")

        name, _ = os.path.splitext(os.path.basename(image_name))
        for sample_idx in range(args.sample_times):
            os.makedirs(f"{args.output_dir}/sample{str(sample_idx).zfill(2)}/", exist_ok=True)
        for sample_idx in range(args.sample_times):
            image = pipeline(
                validation_prompt,
                validation_image,
                num_inference_steps=args.num_inference_steps,
                generator=generator,
                height=height,
                width=width,
                guidance_scale=args.guidance_scale,
                negative_prompt=negative_prompt,
                conditioning_scale=args.conditioning_scale,
                start_point=args.start_point,
                ram_encoder_hidden_states=sam_encoder_hidden_states,
                latent_tiled_size=args.latent_tiled_size,
                latent_tiled_overlap=args.latent_tiled_overlap,
                args=args,
            ).images[0]
            raw_out = image
            if args.align_method == "wavelet":
                image = wavelet_color_fix(image, validation_image)
            elif args.align_method == "adain":
                image = adain_color_fix(image, validation_image)
            if resize_flag:
                image = image.resize((ori_width * rscale, ori_height * rscale))
            sample_dir = out_dir / f"sample{str(sample_idx).zfill(2)}"
            image.save(sample_dir / f"{name}.png")
            if args.save_debug:
                dbg = out_dir / "debug"
                dbg.mkdir(exist_ok=True)
                raw_out.save(dbg / f"{name}_s{sample_idx:02d}_pipeline_out.png")  # before colour fix
                validation_image.save(dbg / f"{name}_processed_lr.png")
        if args.save_debug:
            torch.save(sam_encoder_hidden_states.detach().cpu(), out_dir / "debug" / f"{name}_c_sem.pt")
        log.append(
            {
                "image": os.path.basename(image_name),
                "lr_size": [ori_width, ori_height],
                "processed_size": [width, height],
                "latent_hw": [height // 8, width // 8],
                "prompt": validation_prompt,
                "negative_prompt": negative_prompt,
                "c_sem_shape": list(sam_encoder_hidden_states.shape),
                "seconds": round(time.time() - t0, 2),
            }
        )
    cfg = {k: v for k, v in vars(args).items()}
    (out_dir / "run_info.json").write_text(
        json.dumps({"args": cfg, "images": log, "total_seconds": round(time.time() - t_start, 2)}, indent=2)
    )
    print(f"done in {time.time() - t_start:.1f}s")


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sd2",
        required=True,
        help="diffusers folder: vae/ text_encoder/ tokenizer/ scheduler/ feature_extractor/",
    )
    p.add_argument("--ckpt", required=True, help="unet/ controlnet/ in the authors' layout")
    p.add_argument(
        "--sam2-ckpt",
        dest="sam2_ckpt",
        default=str(HERE / "models" / "sam2_tiny.pt"),
        help="official-format SAM2 file {'model': state_dict} (make_checkpoint.py writes the tiny one)",
    )
    p.add_argument("--sam2-config", dest="sam2_config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    p.add_argument(
        "--sam2-override",
        dest="sam2_override",
        action="append",
        default=None,
        help="hydra override (repeatable); default: srlab's tiny overrides (params.yaml model.semantic)",
    )
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--prompt", type=str, default="")
    p.add_argument("--added_prompt", type=str, default="clean, high-resolution, 8k")
    p.add_argument("--negative_prompt", type=str, default="dotted, noise, blur, lowres, smooth")
    p.add_argument("--guidance_scale", type=float, default=5.5)
    p.add_argument("--conditioning_scale", type=float, default=1.0)
    p.add_argument("--steps", dest="num_inference_steps", type=int, default=50)
    p.add_argument("--process_size", type=int, default=512)
    p.add_argument("--vae_decoder_tiled_size", type=int, default=224)
    p.add_argument("--vae_encoder_tiled_size", type=int, default=1024)
    p.add_argument("--latent_tiled_size", type=int, default=96)
    p.add_argument("--latent_tiled_overlap", type=int, default=32)
    p.add_argument("--upscale", type=int, default=4)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--sample_times", type=int, default=1)
    p.add_argument("--align_method", choices=["wavelet", "adain", "nofix"], default="adain")
    p.add_argument("--start_point", choices=["lr", "noise"], default="lr")
    p.add_argument("--global_reseed", choices=["before_loop", "start"], default="before_loop")
    p.add_argument(
        "--no_debug", dest="save_debug", action="store_false", help="skip debug/ (c_sem .pt, pre-fix PNGs)"
    )
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.sam2_override is None:
        args.sam2_override = list(DEFAULT_SAM2_OVERRIDES)
    args.output_dir = args.out
    torch.set_num_threads(args.threads)
    return args


if __name__ == "__main__":
    main(parse())
