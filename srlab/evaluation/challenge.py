"""The NTIRE 2025 short-form UGC SR challenge score, computed as the organisers' script computes it.

Source of every fact below: ``score_release.py`` in github.com/lixinustc/KVQE-Challenge-CVPR-NTIRE2025,
commit 3ea39604ddc6cc89e9230bd9ce4a4e97dc50584f (blob 8c149535), cited as ``L<line>``; and
/work/shared/paper/README.md, section "The challenge's objective score" (cited as README). This module is
written from those facts; no code is taken from the script.

Folder layout and matching
    * Submission images are ``SUBMISSION/synthetic/*`` and ``SUBMISSION/wild/*``; ground truth is
      ``TRUTH/synthetic/*`` (L324-L326). ``TRUTH/wild`` is listed by the script but never used (L327):
      wild images are scored without reference.
    * Only names matching ``*.png`` and ``*.jpg`` are read (L317, L323-L327; glob, so case-sensitive on
      Linux and hidden files skipped). Lists are sorted (L329-L332), paired by index, the counts must be
      equal (L266) and each pair must have the same basename, extension included (L282). Here pairs are
      made by basename directly and any missing or extra file is named in a ``ChallengeLayoutError``.
    * Stricter than the script: if ``TRUTH/wild`` holds images, the submission's ``wild`` must hold the same
      names (the script would silently average over whatever was submitted, L290-L295); pass
      ``check_wild=False`` to get the script's behaviour. Empty sets are an error (the script divides by
      zero, L296-L302).

Reading
    * PSNR/SSIM images are read with ``cv2.imread(path)`` (L283-L284): flag IMREAD_COLOR, i.e. 8-bit,
      3 channels in B,G,R order (grey is replicated, alpha dropped, EXIF orientation applied). Here PIL
      reads them (``exif_transpose`` then ``convert("RGB")``), which is the same pixel data in R,G,B order
      for PNG; for JPEG the two decoders can differ by a level in rare pixels. Images that are not 8-bit are
      refused rather than guessing how OpenCV would reduce them.
    * pyiqa metrics get the file paths themselves (L289, L295), so pyiqa reads them (PIL, RGB). Paths are
      passed as ``str`` (pyiqa 0.1.16's reader tests ``type(x) == str``).

PSNR and SSIM (``calculate_psnr``/``calculate_ssim`` with ``crop_border=4, test_y_channel=True``, L285-L286)
    * Pixels are cast to float64 (L33-L34, L114-L115), ``crop_border`` pixels are cut from every edge when
      it is not 0 (L36-L38, L117-L119), then the Y channel is taken (L40-L42, L121-L123). Crop and Y commute.
    * Y is BT.601 "studio" luma, not rounded (L157-L170, L230-L260): with B,G,R in [0, 1],
      ``Y = 16 + 24.966 B + 128.553 G + 65.481 R`` (L255, weights in B,G,R order for cv2's BGR images),
      returned as ``Y/255`` (L226) and scaled back by 255 (L170). In 0-255 units:
      ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (README agrees).
    * Precision, a known deviation: the script's Y goes through float32 (``astype(np.float32)``, L166,
      L190, L227), so its PSNR's MSE is a float32 mean (L44) and its SSIM starts from float32 Y (then
      float64, L66-L67); under NumPy 2 its PSNR is even returned as a float32. Here everything is float64,
      as the README's formula implies. Measured against the script's own functions (cv2 5.0, NumPy 2.4)
      on 20 random and smooth+noise images: |dPSNR| <= 8e-6 dB, |dSSIM| <= 9e-8; with Y rounded to
      float32 as there, this SSIM agrees with the script's to 4e-14, so the formulas are the same.
    * PSNR: ``20 log10(255 / sqrt(MSE))`` with data range 255 (L44, L47); ``inf`` when MSE is 0 (L45-L46).
    * SSIM (one channel, L50-L81): ``C1 = (0.01*255)^2``, ``C2 = (0.03*255)^2`` (L63-L64); window = outer
      product of the normalised 1-D Gaussian of length 11, sigma 1.5 (``cv2.getGaussianKernel(11, 1.5)``,
      L68-L69); local means/variances/covariance by filtering and keeping only positions whose 11x11 window
      lies inside the image (``filter2D(...)[5:-5, 5:-5]``, i.e. 'valid', L71-L78), biased (population)
      moments ``E[x^2]-mu^2`` (L76-L78); the SSIM map's mean (L80-L81). With one (Y) channel the mean over
      channels (L125-L128) is that value. This is the MATLAB-equivalent form (L90-L91).

Learned metrics
    * ``pyiqa.create_metric(name, device='cpu')`` with pyiqa's default options, for the names
      ``lpips``, ``musiq``, ``maniqa``, ``clipiqa`` (L275-L276, L335). The pyiqa version is not stated
      (README). Values are ``.detach().cpu().squeeze().item()`` (L289, L295).
    * LPIPS is called as ``lpips(sr_path, hr_path)`` on the synthetic pairs (L287-L289); the names without
      "lpips" (MUSIQ, MANIQA, CLIPIQA) as ``metric(path)`` on the submission's wild images (L292-L295).

Averages and the final score
    * PSNR, SSIM and LPIPS are arithmetic means over the synthetic images; MUSIQ, MANIQA, CLIPIQA over the
      wild images (sum then divide, L296-L302). One identical pair makes the PSNR mean ``inf``, as there.
    * ``Score = PSNR + 10 SSIM - 10 LPIPS + 10 MANIQA + 10 CLIPIQA + 0.1 MUSIQ`` (L339; README).

Unavailable metrics
    The learned metrics need weight files that pyiqa would download. Nothing is ever downloaded here: the
    default factory (:class:`PyiqaFactory`) first checks that the files pyiqa 0.1.16 loads are present in
    the torch hub / Hugging Face caches, and builds the metric with IP sockets disabled, so a file it did
    not know about fails instead of downloading. A metric that cannot be built or run is listed in
    ``ChallengeScore.unavailable`` with the reason, and the final score is then ``None``: no term is ever
    replaced by another metric. ``partial_sum`` (the weighted sum of the available terms only) is reported
    separately and labelled as partial.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from scipy.ndimage import correlate1d

__all__ = [
    "FR_METRICS",
    "LEARNED_METRICS",
    "NR_METRICS",
    "WEIGHTS",
    "ChallengeLayoutError",
    "ChallengeScore",
    "MetricUnavailable",
    "PyiqaFactory",
    "main",
    "match_layout",
    "psnr_y",
    "read_image_rgb",
    "rgb_to_y",
    "score_folder",
    "ssim_y",
]

IMAGE_SUFFIXES = (".png", ".jpg")  # L317: glob '*.png', '*.jpg'
CROP_BORDER = 4  # L285-L286
WEIGHTS: dict[str, float] = {  # L339
    "psnr": 1.0,
    "ssim": 10.0,
    "lpips": -10.0,
    "musiq": 0.1,
    "maniqa": 10.0,
    "clipiqa": 10.0,
}
FR_METRICS = ("lpips",)  # learned, on synthetic pairs (L288)
NR_METRICS = ("musiq", "maniqa", "clipiqa")  # learned, on the wild set (L294)
LEARNED_METRICS = ("lpips", "musiq", "maniqa", "clipiqa")  # L335, in the script's order
METRIC_ORDER = ("psnr", "ssim", *LEARNED_METRICS)

_Y_WEIGHTS_RGB = (65.481, 128.553, 24.966)  # L255 (given there in B,G,R order)
_SSIM_C1 = (0.01 * 255.0) ** 2  # L63
_SSIM_C2 = (0.03 * 255.0) ** 2  # L64
_SSIM_SIZE = 11  # L68
_SSIM_SIGMA = 1.5  # L68


class ChallengeLayoutError(ValueError):
    """The submission and truth folders do not have the organisers' layout or do not match."""


class MetricUnavailable(RuntimeError):
    """Raised by a metrics factory when a metric cannot be built (the message is the reason)."""


# --------------------------------------------------------------------------------------------------
# PSNR / SSIM on Y


def _check_pair(sr_u8: np.ndarray, hr_u8: np.ndarray) -> None:
    for name, arr in (("sr", sr_u8), ("hr", hr_u8)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            got = f"{getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}"
            raise ValueError(f"{name} must be an HxWx3 uint8 RGB array, got {got}")
    if sr_u8.shape != hr_u8.shape:  # L28, L109
        raise ValueError(f"image shapes differ: sr {sr_u8.shape}, hr {hr_u8.shape}")


def _crop(img: np.ndarray, crop_border: int) -> np.ndarray:
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border == 0:  # L36, L117: no crop when 0
        return img
    if img.shape[0] <= 2 * crop_border or img.shape[1] <= 2 * crop_border:
        raise ValueError(f"image {img.shape[:2]} is too small for crop_border={crop_border}")
    return img[crop_border:-crop_border, crop_border:-crop_border]


def rgb_to_y(rgb_u8: np.ndarray) -> np.ndarray:
    """BT.601 Y in [16, 235] as float64, not rounded: ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``.

    Input is HxWx3 RGB with values 0-255 (L157-L170, L255; see the module docstring).
    """
    rgb = np.asarray(rgb_u8, dtype=np.float64)
    wr, wg, wb = _Y_WEIGHTS_RGB
    return 16.0 + (wr * rgb[..., 0] + wg * rgb[..., 1] + wb * rgb[..., 2]) / 255.0


def psnr_y(sr_u8: np.ndarray, hr_u8: np.ndarray, crop_border: int = CROP_BORDER) -> float:
    """PSNR (dB, peak 255) on the BT.601 Y channel after cutting ``crop_border`` pixels per edge.

    ``sr_u8`` and ``hr_u8`` are HxWx3 uint8 RGB. Returns ``inf`` for identical crops (L45-L46).
    """
    _check_pair(sr_u8, hr_u8)
    y_sr = rgb_to_y(_crop(sr_u8, crop_border))
    y_hr = rgb_to_y(_crop(hr_u8, crop_border))
    mse = float(np.mean((y_sr - y_hr) ** 2))  # L44
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(255.0 / math.sqrt(mse))  # L47


def _gaussian_1d(size: int = _SSIM_SIZE, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def _filter_valid(img: np.ndarray, k1d: np.ndarray) -> np.ndarray:
    """Separable filtering by the outer product of ``k1d``, keeping only 'valid' positions."""
    r = len(k1d) // 2
    out = correlate1d(correlate1d(img, k1d, axis=0, mode="reflect"), k1d, axis=1, mode="reflect")
    return out[r:-r, r:-r]  # border-mode-dependent positions are exactly the ones dropped


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    if min(a.shape) < _SSIM_SIZE:
        raise ValueError(
            f"SSIM needs at least {_SSIM_SIZE}x{_SSIM_SIZE} pixels after the crop, got {a.shape}"
        )
    k = _gaussian_1d()
    mu_a, mu_b = _filter_valid(a, k), _filter_valid(b, k)
    var_a = _filter_valid(a * a, k) - mu_a**2
    var_b = _filter_valid(b * b, k) - mu_b**2
    cov = _filter_valid(a * b, k) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + _SSIM_C1) * (2.0 * cov + _SSIM_C2)
    den = (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return float(np.mean(num / den))


def ssim_y(sr_u8: np.ndarray, hr_u8: np.ndarray, crop_border: int = CROP_BORDER) -> float:
    """SSIM (11x11 Gaussian, sigma 1.5, 'valid', float64) on the BT.601 Y channel after the crop.

    ``sr_u8`` and ``hr_u8`` are HxWx3 uint8 RGB; the crop must leave at least 11x11 pixels.
    """
    _check_pair(sr_u8, hr_u8)
    return _ssim_plane(rgb_to_y(_crop(sr_u8, crop_border)), rgb_to_y(_crop(hr_u8, crop_border)))


# --------------------------------------------------------------------------------------------------
# Reading and matching


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, as ``cv2.imread`` (IMREAD_COLOR) sees it, channels reversed."""
    with Image.open(path) as im:
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F") or im.mode.endswith(";16"):
            raise ValueError(f"{path}: mode {im.mode!r} is not 8-bit; the scorer expects 8-bit images")
        im = ImageOps.exif_transpose(im)  # cv2.imread applies the EXIF orientation by default
        return np.array(im.convert("RGB"), dtype=np.uint8)


def _list_images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name.endswith(IMAGE_SUFFIXES)
    }


def _names(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _mismatches(sub: Mapping[str, Path], tru: Mapping[str, Path], sub_dir: Path, tru_dir: Path) -> list[str]:
    """What keeps the submission's names from matching the truth's, one line per kind."""
    problems = []
    if missing := sorted(set(tru) - set(sub)):
        problems.append(f"missing from {sub_dir}: {_names(missing)}")
    if extra := sorted(set(sub) - set(tru)):
        problems.append(f"in {sub_dir} but not in {tru_dir}: {_names(extra)}")
    return problems


def match_layout(
    submission: str | os.PathLike[str], truth: str | os.PathLike[str], check_wild: bool = True
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pairs ``(sr, hr)`` from ``synthetic/`` (matched by file name) and the submission's ``wild/`` images.

    Raises :class:`ChallengeLayoutError` naming every missing or extra file.
    """
    sub, tru = Path(submission), Path(truth)
    for label, root in (("submission", sub), ("truth", tru)):
        if not root.is_dir():
            raise ChallengeLayoutError(f"{label} folder {root} does not exist")
    if not (tru / "synthetic").is_dir():
        raise ChallengeLayoutError(f"truth folder {tru} has no 'synthetic/' subfolder")
    for sub_dir in ("synthetic", "wild"):
        if not (sub / sub_dir).is_dir():
            raise ChallengeLayoutError(f"submission folder {sub} has no '{sub_dir}/' subfolder")

    sub_s, tru_s = _list_images(sub / "synthetic"), _list_images(tru / "synthetic")
    sub_w, tru_w = _list_images(sub / "wild"), _list_images(tru / "wild")
    problems = _mismatches(sub_s, tru_s, sub / "synthetic", tru / "synthetic")
    if check_wild and tru_w:
        problems += _mismatches(sub_w, tru_w, sub / "wild", tru / "wild")
    if problems:
        raise ChallengeLayoutError("submission does not match the truth: " + "; ".join(problems))
    if not tru_s:
        raise ChallengeLayoutError(f"no *.png / *.jpg images in {tru / 'synthetic'}")
    if not sub_w:
        raise ChallengeLayoutError(f"no *.png / *.jpg images in {sub / 'wild'}")
    pairs = [(sub_s[name], tru_s[name]) for name in sorted(tru_s)]
    return pairs, [sub_w[name] for name in sorted(sub_w)]


# --------------------------------------------------------------------------------------------------
# Learned metrics (pyiqa), offline only

MetricFn = Callable[..., Any]
MetricsFactory = Callable[[str, str], MetricFn]


def _hub_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir())


def _hf_hub_cache() -> Path:
    # huggingface_hub's own resolution order: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _url_name(url: str, fallback: str) -> str:
    from urllib.parse import urlparse

    return os.path.basename(urlparse(url).path) or fallback


def _pyiqa_file(module: str, key: str, fallback: str) -> str:
    """The file name pyiqa caches for ``default_model_urls[key]`` of an arch module (fallback: 0.1.16's)."""
    try:
        import importlib

        urls = importlib.import_module(f"pyiqa.archs.{module}").default_model_urls
        return _url_name(urls[key], fallback)
    except Exception:
        return fallback


def required_files(name: str, hub_dir: Path | None = None, hf_cache: Path | None = None) -> list[Path]:
    """Files (or a cache folder) that ``pyiqa.create_metric(name)`` (pyiqa 0.1.16 defaults) loads.

    lpips: pyiqa's LPIPS v0.1 AlexNet heads + torchvision's ImageNet AlexNet (``weights='IMAGENET1K_V1'``);
    musiq: the KonIQ-10k checkpoint; maniqa: the KonIQ checkpoint + timm's ``vit_base_patch8_224``
    (``pretrained=True``, from the Hugging Face cache); clipiqa: OpenAI CLIP RN50 (``<hub>/clip/RN50.pt``).
    """
    hub = Path(hub_dir) if hub_dir is not None else _hub_dir()
    hf = Path(hf_cache) if hf_cache is not None else _hf_hub_cache()
    pyiqa_dir = hub / "pyiqa"  # pyiqa.utils.download_util.DEFAULT_CACHE_DIR
    if name == "lpips":
        return [
            pyiqa_dir / _pyiqa_file("lpips_arch", "0.1_alex", "LPIPS_v0.1_alex-df73285e.pth"),
            hub / "checkpoints" / "alexnet-owt-7be5be79.pth",
        ]
    if name == "musiq":
        return [pyiqa_dir / _pyiqa_file("musiq_arch", "koniq10k", "musiq_koniq_ckpt-e95806b9.pth")]
    if name == "maniqa":
        return [
            pyiqa_dir / _pyiqa_file("maniqa_arch", "koniq", "ckpt_koniq10k.pt"),
            hf / "models--timm--vit_base_patch8_224.augreg2_in21k_ft_in1k",
        ]
    if name == "clipiqa":
        return [hub / "clip" / "RN50.pt"]
    raise KeyError(f"unknown challenge metric {name!r}")


class _NetworkBlocked(OSError):
    pass


@contextmanager
def no_network() -> Iterator[list[str]]:
    """Refuse IP connections and DNS look-ups in this process while active; yields the refused targets.

    Process-wide (other threads are affected too) for the duration of the ``with`` block.
    """
    refused: list[str] = []
    saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo)
    real_connect, real_connect_ex = saved[0], saved[1]

    def _refuse(target: object) -> None:
        refused.append(repr(target))
        raise _NetworkBlocked(f"network access disabled by the challenge scorer (tried {target!r})")

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse(address)
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        _refuse(address)
        raise AssertionError  # unreachable

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        _refuse((host, port))
        raise AssertionError  # unreachable

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.create_connection = create_connection  # type: ignore[assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield refused
    finally:
        (socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo) = (
            saved
        )


class PyiqaFactory:
    """Builds ``pyiqa.create_metric(name, device=device)`` (L276) only from files already on disk.

    Missing files are reported (``MetricUnavailable``) before pyiqa is touched; construction runs under
    :func:`no_network`, so nothing can be downloaded even where this list of files is incomplete.
    ``hub_dir``/``hf_cache`` override where the files are looked for (default: ``torch.hub.get_dir()``
    and the Hugging Face hub cache); with ``hub_dir`` set, pyiqa is pointed there too while building.
    """

    def __init__(
        self, hub_dir: str | os.PathLike[str] | None = None, hf_cache: str | os.PathLike[str] | None = None
    ):
        self.hub_dir = Path(hub_dir) if hub_dir is not None else None
        self.hf_cache = Path(hf_cache) if hf_cache is not None else None

    def missing(self, name: str) -> list[Path]:
        return [p for p in required_files(name, self.hub_dir, self.hf_cache) if not p.exists()]

    def __call__(self, name: str, device: str) -> MetricFn:
        missing = self.missing(name)
        if missing:
            raise MetricUnavailable(
                "weights not available offline (never downloaded): missing " + ", ".join(map(str, missing))
            )
        with no_network() as refused, self._hub_override():
            try:
                import pyiqa

                return pyiqa.create_metric(name, device=device)
            except Exception as exc:
                if refused:
                    raise MetricUnavailable(
                        f"pyiqa needed the network to build {name!r} (blocked; not downloaded): {exc}"
                    ) from exc
                raise MetricUnavailable(
                    f"pyiqa.create_metric({name!r}) failed: {type(exc).__name__}: {exc}"
                ) from exc

    @contextmanager
    def _hub_override(self) -> Iterator[None]:
        if self.hub_dir is None:
            yield
            return
        import torch.hub

        try:
            from pyiqa.utils import download_util
        except Exception:  # pragma: no cover - pyiqa missing is reported by create_metric
            download_util = None
        old_hub = torch.hub.get_dir()
        old_cache = getattr(download_util, "DEFAULT_CACHE_DIR", None)
        torch.hub.set_dir(str(self.hub_dir))
        if download_util is not None:
            download_util.DEFAULT_CACHE_DIR = str(self.hub_dir / "pyiqa")
        try:
            yield
        finally:
            torch.hub.set_dir(old_hub)
            if download_util is not None:
                download_util.DEFAULT_CACHE_DIR = old_cache


# --------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class ChallengeScore:
    """Means of each metric, the final score (None unless every term is available) and why not."""

    metrics: dict[str, float | None]
    unavailable: dict[str, str]
    final: float | None
    partial_sum: float  # weighted sum of the available terms only: NOT the challenge score when partial
    partial_terms: list[str]
    n_synthetic: int
    n_wild: int
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.final is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["formula"] = "PSNR + 10 SSIM - 10 LPIPS + 0.1 MUSIQ + 10 MANIQA + 10 CLIPIQA"
        d["partial_label"] = (
            "complete (equals the final score)"
            if self.complete
            else "PARTIAL: weighted sum of available terms only, not the challenge score"
        )
        return d


def _to_float(value: Any) -> float:
    if hasattr(value, "detach"):  # L289, L295: .detach().cpu().squeeze().item()
        return float(value.detach().cpu().squeeze().item())
    return float(np.asarray(value, dtype=np.float64).squeeze())


def score_folder(
    submission: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    metrics_factory: MetricsFactory | None = None,
    device: str = "cpu",
    check_wild: bool = True,
    metrics: Sequence[str] = LEARNED_METRICS,
) -> ChallengeScore:
    """Score a submission folder against the truth folder the way ``score_release.py`` does.

    ``metrics_factory(name, device)`` returns a callable for each learned metric in ``metrics``: for
    ``lpips`` ``f(sr_path, hr_path)``, for the others ``f(path)``, each returning a number or a tensor.
    It may raise (preferably :class:`MetricUnavailable`) to mark the metric unavailable. Default:
    :class:`PyiqaFactory` (offline; never downloads). Layout errors raise :class:`ChallengeLayoutError`.
    """
    pairs, wild = match_layout(submission, truth, check_wild=check_wild)
    factory = metrics_factory if metrics_factory is not None else PyiqaFactory()
    unknown = [m for m in metrics if m not in LEARNED_METRICS]
    if unknown:
        raise ValueError(f"unknown learned metrics {unknown}; expected a subset of {LEARNED_METRICS}")

    unavailable: dict[str, str] = {m: "not requested" for m in LEARNED_METRICS if m not in metrics}
    fns: dict[str, MetricFn] = {}
    for name in metrics:
        try:
            fns[name] = factory(name, device)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, MetricUnavailable) else f"{type(exc).__name__}: {exc}"
            unavailable[name] = reason

    per_image: dict[str, dict[str, float]] = {}
    sums = dict.fromkeys(METRIC_ORDER, 0.0)

    def _run(name: str, label: str, *args: str) -> None:
        try:
            v = _to_float(fns[name](*args))
        except Exception as exc:
            unavailable[name] = f"failed on {label}: {type(exc).__name__}: {exc}"
            del fns[name]
            return
        per_image.setdefault(label, {})[name] = v
        sums[name] += v

    for sr_path, hr_path in pairs:
        label = f"synthetic/{sr_path.name}"
        sr, hr = read_image_rgb(sr_path), read_image_rgb(hr_path)
        if sr.shape != hr.shape:
            raise ChallengeLayoutError(
                f"{label}: size {sr.shape[:2]} differs from the truth's {hr.shape[:2]}"
            )
        p, s = psnr_y(sr, hr), ssim_y(sr, hr)
        per_image[label] = {"psnr": p, "ssim": s}
        sums["psnr"] += p
        sums["ssim"] += s
        if "lpips" in fns:
            _run("lpips", label, str(sr_path), str(hr_path))
    for path in wild:
        for name in NR_METRICS:
            if name in fns:
                _run(name, f"wild/{path.name}", str(path))

    n_s, n_w = len(pairs), len(wild)
    means: dict[str, float | None] = {}
    for name in METRIC_ORDER:
        if name in unavailable:
            means[name] = None
        else:
            means[name] = sums[name] / (n_w if name in NR_METRICS else n_s)
    available = [m for m in METRIC_ORDER if means[m] is not None]
    partial = sum(WEIGHTS[m] * means[m] for m in available)  # type: ignore[operator]
    final = partial if len(available) == len(METRIC_ORDER) else None
    return ChallengeScore(
        metrics=means,
        unavailable={m: unavailable[m] for m in METRIC_ORDER if m in unavailable},
        final=final,
        partial_sum=partial,
        partial_terms=available,
        n_synthetic=n_s,
        n_wild=n_w,
        per_image=per_image,
    )


# --------------------------------------------------------------------------------------------------
# Command line: srlab score SUBMISSION --truth TRUTH [--device cpu] [--json out.json]

_LABELS = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "musiq": "MUSIQ",
    "maniqa": "MANIQA",
    "clipiqa": "CLIPIQA",
}


def format_score(result: ChallengeScore) -> str:
    lines = [f"images: synthetic {result.n_synthetic}, wild {result.n_wild}"]
    for name in METRIC_ORDER:
        value = result.metrics[name]
        shown = f"{value:.6f}" if value is not None else f"unavailable ({result.unavailable[name]})"
        lines.append(f"{_LABELS[name]:<8} {shown}")
    if result.final is not None:
        lines.append(f"FinalScore {result.final:.6f}")
    else:
        names = ", ".join(_LABELS[m] for m in result.unavailable)
        lines.append(f"FinalScore unavailable (missing: {names})")
        terms = " + ".join(f"{WEIGHTS[m]:g}*{_LABELS[m]}" for m in result.partial_terms)
        lines.append(
            f"PARTIAL sum of available terms ({terms or 'none'}), not the score: {result.partial_sum:.6f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``srlab score``. Exit status: 0 final score computed, 1 final score unavailable, 2 bad input."""
    parser = argparse.ArgumentParser(
        prog="srlab score",
        description="NTIRE 2025 short-form UGC SR challenge score (organisers' score_release.py protocol).",
    )
    parser.add_argument("submission", help="folder with synthetic/ and wild/ SR results")
    parser.add_argument(
        "--truth", required=True, help="folder with synthetic/ HR images (and optionally wild/)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for the pyiqa metrics (default: cpu)")
    parser.add_argument(
        "--json", dest="json_out", default=None, help="also write the result to this JSON file"
    )
    parser.add_argument(
        "--no-check-wild", action="store_true", help="do not require wild/ names to match the truth's wild/"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        result = score_folder(
            args.submission, args.truth, device=args.device, check_wild=not args.no_check_wild
        )
    except (ChallengeLayoutError, ValueError, OSError) as exc:
        print(f"srlab score: error: {exc}", file=sys.stderr)
        return 2
    print(format_score(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(_json_safe(result.to_dict()), indent=2) + "\n")
    return 0 if result.complete else 1


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # inf PSNR (identical images) as "inf": JSON has no infinity
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
