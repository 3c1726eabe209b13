"""The SR sampler: one LR image in, one SR image out, with the paper's three knobs (Table 1).

``SRPipeline.__call__`` reads top to bottom like the released inference (``srlab.sampling.sampler`` lists the
facts it follows): check inputs, LR condition, semantic tokens, prompts, timesteps, start latents,
denoising loop (tiled over the latent), decode (tiled VAE), colour fix, exact output size.

Memory: the denoiser sees at most one ``latent_tile`` x ``latent_tile`` tile (times 2 with CFG) at a
time, the VAE encoder one ``vae_encoder_tile`` image tile and the decoder one ``vae_decoder_tile``
latent tile, so peak memory is bounded by the tile sizes, not the image size (see
benchmarks/bench_infer.py for measured figures).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from srlab.io import from_vae_range, to_vae_range
from srlab.models.sr_model import SRModel, predict
from srlab.sampling import colorfix, sampler, tiling
from srlab.sampling.params import SamplerParams


class SRPipeline:
    """Wraps an ``SRModel`` for inference on ``device`` in ``dtype`` (bf16 on GPUs, fp32 on CPU)."""

    def __init__(
        self, model: SRModel, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ):
        self.model, self.device, self.dtype = model, torch.device(device), dtype
        nets = [model.vae, model.unet, model.controlnet, model.text_encoder]
        if isinstance(model.semantic, torch.nn.Module):
            nets.append(model.semantic)
        for net in nets:
            first = next(net.parameters(), None)
            if first is not None and first.dtype != dtype:  # diffusers warns on every dtype cast
                net.to(dtype=dtype)
            net.to(self.device).eval()
        self.factor = model.vae_scale_factor

    @torch.no_grad()
    def __call__(
        self,
        lr: torch.Tensor,
        settings: SamplerParams,
        generator: torch.Generator,
        name: str = "",
        progress: bool = False,
    ) -> torch.Tensor:
        """LR (3, h, w) in [0, 1] -> SR (3, h * upscale, w * upscale) in [0, 1], float32 on the CPU.

        ``name`` is the image name the tag source looks up; ``generator`` is the only randomness."""
        # 1. Check inputs
        self.check_inputs(lr, settings)
        height, width = lr.shape[-2] * settings.upscale, lr.shape[-1] * settings.upscale
        lr = lr[None].to(self.device, self.dtype)  # (1, 3, h, w)
        # 2. The LR condition at working size (ControlNet input, lr start point, colour reference)
        cond = sampler.prepare_condition(lr.float(), settings.upscale, settings.process_size).to(self.dtype)
        # 3. Semantic tokens, once per image
        c_sem = self.model.semantic_tokens(lr)
        # 4. Prompts (tags + user + added; negative prompt for the unconditional branch)
        guided = sampler.uses_guidance(settings.guidance_scale)
        prompt = sampler.build_prompt(self.model.tags(name, lr), settings.user_prompt, settings.added_prompt)
        prompts = [settings.negative_prompt, prompt] if guided else [prompt]
        embeds = self.model.encode_prompt(prompts).to(self.device, self.dtype)  # (1 or 2, 77, D)
        # 5. Timesteps
        scheduler = sampler.make_scheduler(settings.scheduler, self.model.scheduler.config)
        scheduler.set_timesteps(settings.steps, device=self.device)
        # 6. Start latents
        latents = self.prepare_latents(cond, settings, scheduler, generator)
        # 7. Denoising loop
        for t in tqdm(scheduler.timesteps, desc="denoise", disable=not progress, leave=False):
            if settings.start_point == "lr" and t > settings.start_steps:
                continue
            eps = self.denoise(latents, t, embeds, cond, c_sem, settings, guided)
            latents = scheduler.step(eps, t, latents, generator=generator, return_dict=False)[0]
        # 8. Decode
        image = self.decode(latents, settings)
        # 9. Colour fix towards the LR condition, then exactly upscale x the input size
        image = colorfix.color_fix(image, cond.float(), settings.color_fix)
        return sampler.restore_size(image, height, width)[0].cpu()

    def check_inputs(self, lr: torch.Tensor, settings: SamplerParams) -> None:
        if lr.ndim != 3 or lr.shape[0] != 3:
            raise ValueError(f"LR image must be a (3, h, w) tensor, got shape {tuple(lr.shape)}")
        if not torch.isfinite(lr).all() or lr.min() < 0 or lr.max() > 1:
            raise ValueError("LR image values must be finite and in [0, 1] (see srlab.io.read_image)")
        if settings.upscale < 1:
            raise ValueError(f"upscale must be >= 1, got {settings.upscale}")
        if settings.steps < 1:
            raise ValueError(f"steps must be >= 1, got {settings.steps}")
        if settings.latent_overlap >= settings.latent_tile:
            raise ValueError(
                f"latent_overlap ({settings.latent_overlap}) must be below "
                f"latent_tile ({settings.latent_tile})"
            )
        if settings.vae_encoder_tile % self.factor:
            raise ValueError(f"vae_encoder_tile must be a multiple of the VAE factor {self.factor}")

    def prepare_latents(
        self, cond: torch.Tensor, settings: SamplerParams, scheduler: object, generator: torch.Generator
    ) -> torch.Tensor:
        """Pure noise, or (lr start) the LR latent noised to ``start_steps``; drawn from ``generator``."""
        shape = (
            1,
            self.model.unet.config.in_channels,
            cond.shape[-2] // self.factor,
            cond.shape[-1] // self.factor,
        )
        noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        noise = noise.to(self.device, self.dtype)
        if settings.start_point == "noise":
            return noise * scheduler.init_noise_sigma  # type: ignore[attr-defined]
        latent = self.encode(cond, settings.vae_encoder_tile, generator)
        t = torch.tensor([settings.start_steps], device=self.device, dtype=torch.long)
        return scheduler.add_noise(latent, noise, t)  # type: ignore[attr-defined]

    def encode(self, image: torch.Tensor, tile: int, generator: torch.Generator) -> torch.Tensor:
        """[0, 1] image -> scaled VAE latent (a posterior sample, as the released code), tiled."""
        vae = self.model.vae
        overlap = tile // 4 // self.factor * self.factor

        def fn(x: torch.Tensor, _: tiling.Box) -> torch.Tensor:
            dist = vae.encode(to_vae_range(x)).latent_dist
            eps = torch.randn(dist.mean.shape, generator=generator, device=generator.device).to(dist.mean)
            return dist.mean + dist.std * eps

        latent = tiling.tiled(fn, image, tile, overlap, scale=1 / self.factor)
        return latent * vae.config.scaling_factor

    def denoise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        embeds: torch.Tensor,
        cond: torch.Tensor,
        c_sem: torch.Tensor | None,
        settings: SamplerParams,
        guided: bool,
    ) -> torch.Tensor:
        """The guided noise prediction at ``t``, tiled over the latent with Gaussian blending."""
        f, n = self.factor, embeds.shape[0]

        def fn(tile: torch.Tensor, box: tiling.Box) -> torch.Tensor:
            top, left, h, w = box
            cond_tile = cond[:, :, top * f : (top + h) * f, left * f : (left + w) * f]
            eps = predict(
                self.model.unet,
                self.model.controlnet,
                tile.expand(n, -1, -1, -1),
                t.expand(n),
                embeds,
                cond_tile.expand(n, -1, -1, -1),
                c_sem,
                settings.conditioning_scale,
            )
            if guided:
                uncond, text = eps.chunk(2)
                return sampler.combine_guidance(uncond, text, settings.guidance_scale)
            return eps

        return tiling.tiled(fn, latents, settings.latent_tile, settings.latent_overlap)

    def decode(self, latents: torch.Tensor, settings: SamplerParams) -> torch.Tensor:
        """Scaled latent -> [0, 1] float32 image, tiled over the latent."""
        vae = self.model.vae
        tile = settings.vae_decoder_tile

        def fn(z: torch.Tensor, _: tiling.Box) -> torch.Tensor:
            return vae.decode(z / vae.config.scaling_factor, return_dict=False)[0]

        image = tiling.tiled(fn, latents, tile, tile // 4, scale=self.factor)
        return from_vae_range(image.float())
