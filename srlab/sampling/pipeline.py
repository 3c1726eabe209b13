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

import contextlib
from collections.abc import Iterator

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from tqdm.auto import tqdm

from srlab.io import from_vae_range, to_vae_range
from srlab.models.sr_model import SRModel, predict
from srlab.sampling import colorfix, release, release_vae, sampler, tiling
from srlab.sampling.params import SamplerParams

FIDELITIES = ("srlab", "release")


class SRPipeline:
    """Wraps an ``SRModel`` for inference on ``device`` in ``dtype`` (bf16 on GPUs, fp32 on CPU).

    ``fidelity`` picks the arithmetic (README, "Fidelity"): ``srlab`` blends tiles with a wide window, resizes
    in float and keeps the semantic extractor in ``dtype``; ``release`` follows the released code
    (srlab.sampling.release and srlab.sampling.release_vae): its tiling rules, 8-bit PIL resizes, rounding
    points and AdaIN, SAM2 in fp32, and fp16 under autocast when ``dtype`` is fp16 on CUDA."""

    def __init__(
        self,
        model: SRModel,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        fidelity: str = "srlab",
    ):
        if fidelity not in FIDELITIES:
            raise ValueError(f"fidelity must be one of {FIDELITIES}, got {fidelity!r}")
        self.model, self.device, self.dtype, self.fidelity = model, torch.device(device), dtype, fidelity
        self.release = fidelity == "release"
        nets = [model.vae, model.unet, model.controlnet, model.text_encoder]
        semantic = model.semantic if isinstance(model.semantic, torch.nn.Module) else None
        for net in nets + ([semantic] if semantic is not None else []):
            # the released script never casts SAM2 (script:181-189): its embedding stays fp32
            want = torch.float32 if (self.release and net is semantic) else dtype
            first = next(net.parameters(), None)
            if first is not None and first.dtype != want:  # diffusers warns on every dtype cast
                net.to(dtype=want)
            net.to(self.device).eval()
        self.semantic_dtype = torch.float32 if self.release else dtype
        self.autocast = self.release and self.device.type == "cuda" and dtype == torch.float16
        self.factor = model.vae_scale_factor

    @torch.no_grad()
    def __call__(
        self,
        lr: torch.Tensor,
        settings: SamplerParams,
        generator: torch.Generator,
        name: str = "",
        progress: bool = False,
        posterior_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """LR (3, h, w) in [0, 1] -> SR (3, h * upscale, w * upscale) in [0, 1], float32 on the CPU.

        ``name`` is the image name the tag source looks up. ``generator`` draws the start latent and
        each step's noise; ``posterior_generator`` (default: ``generator``) the lr start's VAE sample,
        which the released code draws from the global RNG."""
        # 1. Check inputs
        self.check_inputs(lr, settings)
        height, width = lr.shape[-2] * settings.upscale, lr.shape[-1] * settings.upscale
        # 2. The LR condition at working size (ControlNet input, lr start point, colour reference)
        if self.release:
            lr_pil = release.to_pil(lr)  # the script reads 8-bit files
            cond_pil = release.condition_image(lr_pil, settings.upscale, settings.process_size)
            lr = release.from_pil(lr_pil)[None].to(self.device)
            cond = release.from_pil(cond_pil)[None].to(self.device, self.dtype)
        else:
            lr = lr[None].to(self.device, self.dtype)  # (1, 3, h, w)
            cond = sampler.prepare_condition(lr.float(), settings.upscale, settings.process_size).to(
                self.dtype
            )
        # 3. Semantic tokens, once per image, from the original LR
        c_sem = self.model.semantic_tokens(lr.to(self.semantic_dtype), antialias=not self.release)
        # 4. Prompts (tags + user + added; negative prompt for the unconditional branch)
        guided = sampler.uses_guidance(settings.guidance_scale)
        prompt = sampler.build_prompt(
            self.model.tags(name, lr[0]), settings.user_prompt, settings.added_prompt
        )
        prompts = [settings.negative_prompt, prompt] if guided else [prompt]
        embeds = self.model.encode_prompt(prompts).to(self.device, self.dtype)  # (1 or 2, 77, D)
        # 5. Timesteps
        scheduler = sampler.make_scheduler(settings.scheduler, self.model.scheduler.config)
        scheduler.set_timesteps(settings.steps, device=self.device)
        with self.precision():
            # 6. Start latents
            latents = self.prepare_latents(cond, settings, scheduler, generator, posterior_generator, guided)
            # 7. Denoising loop
            for t in tqdm(scheduler.timesteps, desc="denoise", disable=not progress, leave=False):
                if settings.start_point == "lr" and t > settings.start_steps:
                    continue
                eps = self.denoise(latents, t, embeds, cond, c_sem, settings, guided)
                latents = scheduler.step(eps, t, latents, generator=generator, return_dict=False)[0]
            # 8. Decode
            decoded = self.decode(latents, settings)
        # 9. Colour fix towards the LR condition, then exactly upscale x the input size
        if self.release:
            fixed = release.color_fix(release.postprocess(decoded), cond_pil, settings.color_fix)
            return release.from_pil(release.resize(fixed, width, height))
        image = colorfix.color_fix(from_vae_range(decoded.float()), cond.float(), settings.color_fix)
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

    @contextlib.contextmanager
    def precision(self) -> Iterator[None]:
        """fp16 autocast around the diffusion and the VAE in release fidelity on CUDA (script:273)."""
        with torch.autocast("cuda", dtype=torch.float16) if self.autocast else contextlib.nullcontext():
            yield

    def prepare_latents(
        self,
        cond: torch.Tensor,
        settings: SamplerParams,
        scheduler: object,
        generator: torch.Generator,
        posterior_generator: torch.Generator | None = None,
        guided: bool = False,
    ) -> torch.Tensor:
        """Pure noise, or (lr start) the LR latent noised to ``start_steps``. The noise is drawn first,
        from ``generator``; then the VAE posterior sample, from ``posterior_generator``."""
        shape = (
            1,
            self.model.unet.config.in_channels,
            cond.shape[-2] // self.factor,
            cond.shape[-1] // self.factor,
        )
        # release: drawn in the model's dtype, as diffusers' randn_tensor (pipeline:706-724)
        draw = self.dtype if self.release else torch.float32
        noise = torch.randn(shape, generator=generator, device=generator.device, dtype=draw)
        noise = noise.to(self.device, self.dtype)
        if settings.start_point == "noise":
            return noise * scheduler.init_noise_sigma  # type: ignore[attr-defined]
        posterior = posterior_generator or generator
        if self.release:
            latent = self.encode_release(cond, settings.vae_encoder_tile, posterior, 2 if guided else 1)
        else:
            latent = self.encode(cond, settings.vae_encoder_tile, posterior)
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

    def encode_release(
        self, image: torch.Tensor, tile: int, generator: torch.Generator, batch: int
    ) -> torch.Tensor:
        """The released lr start (pipeline:988-994): the CFG-doubled image through the tiled encoder, one
        posterior draw of the whole batch's shape, the first row kept."""
        vae = self.model.vae
        x = to_vae_range(image).expand(batch, -1, -1, -1)
        moments = release_vae.encode(vae, x, tile)
        if vae.quant_conv is not None:
            moments = vae.quant_conv(moments)
        dist = DiagonalGaussianDistribution(moments)
        eps = torch.randn(
            dist.mean.shape, generator=generator, device=generator.device, dtype=dist.mean.dtype
        )
        sample = dist.mean + dist.std * eps.to(self.device)
        if (
            generator.device.type == "cpu"
        ):  # pipeline:992 draws t = randint(999, 1000) from the CPU's global RNG
            torch.randint(999, 1000, (1,), generator=generator)
        return sample[:1] * vae.config.scaling_factor

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
        """The guided noise prediction at ``t``, tiled over the latent (srlab: blended per tile; release:
        both branches stitched with the released window, then combined)."""
        f, n = self.factor, embeds.shape[0]

        def branches(tile: torch.Tensor, box: tiling.Box) -> torch.Tensor:
            top, left, h, w = box
            cond_tile = cond[:, :, top * f : (top + h) * f, left * f : (left + w) * f]
            return predict(
                self.model.unet,
                self.model.controlnet,
                tile.expand(n, -1, -1, -1),
                t.expand(n),
                embeds,
                cond_tile.expand(n, -1, -1, -1),
                c_sem,
                settings.conditioning_scale,
            )

        def guide(eps: torch.Tensor) -> torch.Tensor:
            if guided:
                uncond, text = eps.chunk(2)
                return sampler.combine_guidance(uncond, text, settings.guidance_scale)
            return eps

        if self.release:
            return guide(self.stitch_release(branches, latents, settings))
        return tiling.tiled(lambda x, box: guide(branches(x, box)), latents, settings.latent_tile,
                            settings.latent_overlap)  # fmt: skip

    def stitch_release(self, fn: object, latents: torch.Tensor, settings: SamplerParams) -> torch.Tensor:
        """The released latent tiling (pipeline:1004-1188): one call when the map fits, else square tiles
        weighted by the released window, summed in float32 and normalised."""
        _, _, h, w = latents.shape
        boxes = release.tile_boxes(h, w, settings.latent_tile, settings.latent_overlap)
        if len(boxes) == 1:
            return fn(latents, boxes[0])  # type: ignore[operator]
        total: torch.Tensor | None = None
        weight = torch.zeros_like(latents, dtype=torch.float32)
        win = release.window(boxes[0][2]).to(self.device)
        for top, left, th, tw in boxes:
            pred = fn(latents[:, :, top : top + th, left : left + tw], (top, left, th, tw))  # type: ignore[operator]
            if total is None:
                total = torch.zeros(
                    pred.shape[0], *latents.shape[1:], device=self.device, dtype=torch.float32
                )
            total[:, :, top : top + th, left : left + tw] += pred * win
            weight[:, :, top : top + th, left : left + tw] += win
        assert total is not None
        return total / weight

    def decode(self, latents: torch.Tensor, settings: SamplerParams) -> torch.Tensor:
        """Scaled latent -> the VAE's output in [-1, 1] (srlab: tiled with blending; release: the released
        tiled decoder)."""
        vae = self.model.vae
        tile = settings.vae_decoder_tile
        z = latents / vae.config.scaling_factor
        if self.release:
            return release_vae.decode(vae, z, tile)  # post_quant_conv included

        def fn(part: torch.Tensor, _: tiling.Box) -> torch.Tensor:
            return vae.decode(part, return_dict=False)[0]

        return tiling.tiled(fn, z, tile, tile // 4, scale=self.factor)
