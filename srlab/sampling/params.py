"""Schema of params.yaml `infer`: named presets of the sampler settings per kind of evaluation set.

Two presets (README, "Sampler presets", says where each value comes from):
- ``paper``: Table 1 with the Table 3 prompts;
- ``release``: the authors' README commands with their script's argparse defaults, as the script runs.
``overrides`` sets the compute knobs of every preset for a profile (tiny: CPU-sized; null: the
preset's value); ``kind_overrides`` the sampling knobs of one kind of set for a profile (tiny: what its
small models need, measured in params.yaml; the paper profile: none). ``fidelity`` picks how the
sampler computes (srlab.sampling.pipeline): ``release`` reproduces the released inference code's
arithmetic, ``srlab`` is this project's (README, "Fidelity").
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from pydantic import Field

from srlab.config import schema


@schema
class SamplerParams:
    """How to sample one kind of evaluation set (Table 1); see srlab.sampling.pipeline."""

    start_point: Literal["noise", "lr"]  # lr: the LR latent noised to start_steps (LRE strategy)
    start_steps: Annotated[int, Field(ge=0, le=999)]  # the lr start's noise level; later steps are skipped
    guidance_scale: Annotated[float, Field(ge=0.0, le=50.0)]  # CFG only when > 1 (released rule)
    user_prompt: str
    added_prompt: str  # appended to the tag prompt (wild: a positive prompt)
    negative_prompt: str  # the unconditional branch of CFG
    scheduler: Literal["ddpm", "ddim", "dpmpp"]
    steps: Annotated[int, Field(ge=1, le=1000)]
    upscale: Annotated[int, Field(ge=1, le=8)]  # 4: synthetic track, 1: wild (same size out)
    process_size: Annotated[int, Field(ge=8)]  # LR enlarged first if short side * upscale is below this
    conditioning_scale: Annotated[float, Field(ge=0.0, le=10.0)]
    color_fix: Literal["none", "adain", "wavelet"]  # released default: adain
    latent_tile: Annotated[int, Field(ge=4)]  # denoiser tile and overlap in latent px (released: 96 / 32)
    latent_overlap: Annotated[int, Field(ge=0)]
    vae_encoder_tile: Annotated[int, Field(ge=8)]  # image px
    vae_decoder_tile: Annotated[int, Field(ge=4)]  # latent px


@schema
class ComputeOverrides:
    """Compute knobs set over every preset (null: the preset's own value)."""

    steps: Annotated[int, Field(ge=1, le=1000)] | None
    process_size: Annotated[int, Field(ge=8)] | None
    latent_tile: Annotated[int, Field(ge=4)] | None
    latent_overlap: Annotated[int, Field(ge=0)] | None
    vae_encoder_tile: Annotated[int, Field(ge=8)] | None
    vae_decoder_tile: Annotated[int, Field(ge=4)] | None


@schema
class KindOverrides:
    """Sampling knobs set over every preset's entry of one kind of set (null: the preset's value)."""

    start_point: Literal["noise", "lr"] | None
    start_steps: Annotated[int, Field(ge=0, le=999)] | None
    guidance_scale: Annotated[float, Field(ge=0.0, le=50.0)] | None
    color_fix: Literal["none", "adain", "wavelet"] | None


PRESETS = ("paper", "release")
Preset = Literal["paper", "release"]


@schema
class InferParams:
    """The infer stage: which preset samples each eval set, the presets, and how the sampler computes."""

    preset: Preset  # a name in `presets`: every eval set is sampled with presets[preset][its kind] ...
    set_presets: dict[str, Preset]  # ... unless its name is here (eval set name -> preset name)
    fidelity: Literal["release", "srlab"]
    overrides: ComputeOverrides
    kind_overrides: dict[str, KindOverrides]  # kind of set (synthetic / wild) -> its knobs over every preset
    presets: dict[Preset, dict[str, SamplerParams]]  # preset -> kind of set (synthetic / wild) -> settings
    device: Literal["auto", "cpu", "cuda"]
    dtype: Literal["auto", "float32", "bfloat16", "float16"]  # auto: see srlab.sampling.upscale

    def preset_for(self, set_name: str | None = None) -> str:
        """The preset an eval set is sampled with (``set_presets``, else ``preset``)."""
        return self.set_presets.get(set_name, self.preset) if set_name else self.preset

    def sampler(self, kind: str, set_name: str | None = None, preset: str | None = None) -> SamplerParams:
        """The settings for a set of ``kind``: its preset's entry with ``overrides`` applied."""
        name = preset or self.preset_for(set_name)
        if name not in self.presets:
            raise KeyError(
                f"infer.preset {name!r} unknown; params.yaml infer.presets has {sorted(self.presets)}"
            )
        tracks = self.presets[name]
        if kind not in tracks:
            raise KeyError(
                f"infer.presets.{name} has no {kind!r} entry (have {sorted(tracks)}); "
                f"add infer.presets.{name}.{kind}"
            )
        changes = {k: v for k, v in dataclasses.asdict(self.overrides).items() if v is not None}
        if kind in self.kind_overrides:
            knobs = dataclasses.asdict(self.kind_overrides[kind]).items()
            changes.update({k: v for k, v in knobs if v is not None})
        return dataclasses.replace(tracks[kind], **changes)

    def with_sampler(self, kind: str, settings: SamplerParams, set_name: str | None = None) -> InferParams:
        """A copy in which ``sampler(kind, set_name)`` is exactly ``settings`` (the overrides are baked into
        every preset entry first, so the rest samples as before)."""
        baked = {p: {k: self.sampler(k, preset=p) for k in tracks} for p, tracks in self.presets.items()}
        baked[self.preset_for(set_name)][kind] = settings
        empty = ComputeOverrides(**dict.fromkeys(dataclasses.asdict(self.overrides)))
        return dataclasses.replace(self, presets=baked, overrides=empty, kind_overrides={})
