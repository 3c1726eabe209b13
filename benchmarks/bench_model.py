"""Cost of one denoising step (UNet + ControlNet) at 512x512 (64x64 latent), batch 1, SD2-base size.

Prints figures, asserts nothing. Variants: plain SD2 + ControlNet (no semantic blocks), the faithful
semantic model (4096 SAM2 tokens, full blocks: the released code) and the lighter options
(``semantic.tokens`` 1024/256, ``semantic.block`` cross_only).

    python benchmarks/bench_model.py                          # GFLOP per step, counted on the meta device
    python benchmarks/bench_model.py --device cuda --dtype bf16 --steps 20   # + ms per step (SDPA)

FLOPs: torch.utils.flop_counter.FlopCounterMode (matmul, conv and attention FLOPs) on the meta device
(no memory, no weights); falls back to CPU fp32 with a warning if the meta run fails. Timing builds
random weights directly on the device (no repo data, no downloads) and times forward steps under
``torch.no_grad`` with CUDA events. The shapes come from tests/fixtures/seesr_layout_checkpoint.json
(the SD2-base UNet config of the authors' checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab.models.params import SemanticParams  # noqa: E402
from srlab.models.sr_model import build_denoisers, plain_config, predict  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "seesr_layout_checkpoint.json"
COND_CHANNELS = (16, 32, 96, 256)  # SD2 ControlNet
REFERENCE_GFLOP = {"plain": 1088.0, "full, 1024 tokens": 1724.9, "full, 4096 tokens (faithful)": 2039.0}


@dataclass(frozen=True)
class Variant:
    name: str
    tokens: int | None  # None: no semantic blocks
    block: str = "full"


VARIANTS = (
    Variant("plain", None),
    Variant("full, 4096 tokens (faithful)", 4096),
    Variant("full, 1024 tokens", 1024),
    Variant("full, 256 tokens", 256),
    Variant("cross_only, 4096 tokens", 4096, "cross_only"),
    Variant("cross_only, 1024 tokens", 1024, "cross_only"),
    Variant("cross_only, 256 tokens", 256, "cross_only"),
)


def build(variant: Variant, device: torch.device | str, dtype: torch.dtype) -> tuple[torch.nn.Module, ...]:
    """UNet + ControlNet of the variant, random weights, built directly on ``device``."""
    config = plain_config(json.loads(FIXTURE.read_text())["unet_config"])
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config)
        if variant.tokens is None:
            controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=COND_CHANNELS)
        else:
            semantic = SemanticParams(
                extractor="sam2",
                tokens=variant.tokens,
                block=variant.block,
                init="random",
                width=512,  # type: ignore[arg-type]
                sam2_config="",
                sam2_checkpoint=None,
                sam2_overrides=(),
            )
            unet, controlnet = build_denoisers(unet, COND_CHANNELS, semantic)
    return unet.to(dtype).eval(), controlnet.to(dtype).eval()


def inputs(variant: Variant, batch: int, device: torch.device | str, dtype: torch.dtype) -> tuple:
    with torch.device(device):
        latents = torch.randn(batch, 4, 64, 64, dtype=dtype)
        timesteps = torch.full((batch,), 500, dtype=torch.long)
        text = torch.randn(batch, 77, 1024, dtype=dtype)
        lr = torch.rand(batch, 3, 512, 512, dtype=dtype)
        c_sem = None if variant.tokens is None else torch.randn(batch, variant.tokens, 512, dtype=dtype)
    return latents, timesteps, text, lr, c_sem


def step(unet: torch.nn.Module, controlnet: torch.nn.Module, variant: Variant, args: tuple) -> torch.Tensor:
    latents, timesteps, text, lr, c_sem = args
    if variant.tokens is not None:
        return predict(unet, controlnet, latents, timesteps, text, lr, c_sem)
    down, mid = controlnet(
        latents, timesteps, encoder_hidden_states=text, controlnet_cond=lr, return_dict=False
    )
    return unet(
        latents,
        timesteps,
        encoder_hidden_states=text,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
        return_dict=False,
    )[0]


def gflop(variant: Variant) -> tuple[float, float, str]:
    """(UNet GFLOP, ControlNet GFLOP, where counted)."""
    where = "meta"
    try:
        nets = build(variant, "meta", torch.float32)
        args = inputs(variant, 1, "meta", torch.float32)
    except Exception as err:
        warnings.warn(f"meta device failed ({err}); counting on CPU fp32 (slow)", stacklevel=1)
        where = "cpu"
        nets = build(variant, "cpu", torch.float32)
        args = inputs(variant, 1, "cpu", torch.float32)
    unet, controlnet = nets
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        step(unet, controlnet, variant, args)
    per_module = counter.get_flop_counts()
    controlnet_flops = sum(per_module.get("ControlNetModel", {}).values())
    total = counter.get_total_flops()
    return (total - controlnet_flops) / 1e9, controlnet_flops / 1e9, where


def time_ms(variant: Variant, device: str, dtype: torch.dtype, steps: int, batch: int) -> float:
    unet, controlnet = build(variant, device, dtype)
    args = inputs(variant, batch, device, dtype)
    with torch.no_grad():
        for _ in range(3):  # warm-up (kernel selection, allocator)
            step(unet, controlnet, variant, args)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                step(unet, controlnet, variant, args)
            end.record()
            torch.cuda.synchronize()
            elapsed = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            for _ in range(steps):
                step(unet, controlnet, variant, args)
            elapsed = (time.perf_counter() - t0) * 1000
    del unet, controlnet, args
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default=None, help="time on this device (e.g. cuda); omit for FLOPs only")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument(
        "--batch", type=int, default=1, help="batch for timing (2 = classifier-free guidance)"
    )
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()  # not the "modules kept in float32: []" notice on every cast
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]

    if not args.no_flops:
        print("GFLOP per denoising step, 512x512 (64x64 latent), batch 1, UNet + ControlNet")
        header = ("variant", "UNet", "ControlNet", "total", "vs plain", "reference")
        print("{:32s} {:>8s} {:>10s} {:>8s} {:>8s} {:>9s}".format(*header))
        plain_total = None
        for variant in VARIANTS:
            unet_g, control_g, where = gflop(variant)
            total = unet_g + control_g
            plain_total = plain_total or total
            ref = REFERENCE_GFLOP.get(variant.name)
            ref_text = f"{ref:9.1f}" if ref else f"{'':9s}"
            print(
                f"{variant.name:32s} {unet_g:8.1f} {control_g:10.1f} {total:8.1f} {total / plain_total:8.2f} "
                f"{ref_text}{'' if where == 'meta' else '  (cpu)'}"
            )

    if args.device is not None:
        device = args.device
        name = torch.cuda.get_device_name(device) if device.startswith("cuda") else device
        print(
            f"\nms per denoising step, {args.dtype}, batch {args.batch}, SDPA, {args.steps} steps, on {name}"
        )
        print(
            f"torch {torch.__version__}, SDPA backends: flash={torch.backends.cuda.flash_sdp_enabled()} "
            f"mem_efficient={torch.backends.cuda.mem_efficient_sdp_enabled()}"
        )
        plain_ms = None
        for variant in VARIANTS:
            try:
                ms = time_ms(variant, device, dtype, args.steps, args.batch)
            except torch.OutOfMemoryError:
                print(f"{variant.name:32s} out of memory")
                continue
            plain_ms = plain_ms or ms
            print(f"{variant.name:32s} {ms:8.1f} ms  {ms / plain_ms:5.2f}x plain")


if __name__ == "__main__":
    main()
