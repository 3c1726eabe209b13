"""Image files in and out, and the one place where tensor conventions are written down.

Conventions (everywhere in srlab):
- an image tensor is float32 RGB in [0, 1], shape (3, H, W), or (B, 3, H, W) for a batch;
- at the VAE boundary it is scaled to [-1, 1] (``to_vae_range`` / ``from_vae_range``);
- files are 8-bit PNG on the way out; writes are atomic (temp file + rename), so an interrupted
  run never leaves a half-written image that a later stage would read.

Reading converts what UGC throws at us, and says so here rather than guessing silently:
- EXIF orientation is applied (a phone photo comes out the way it is displayed);
- an embedded ICC profile is converted to sRGB (PIL ImageCms, perceptual intent): the model and the
  metrics assume sRGB, and outputs are written as plain sRGB PNG without a profile;
- grayscale (L, I;16) -> RGB by repeating the channel;
- alpha (RGBA, LA, P with transparency) -> composited over white;
- 16-bit (I;16, 16-bit PNG) -> scaled by 1/65535 (no 8-bit rounding on the way in);
- unreadable or corrupt files, and images over ``max_pixels`` (read from the header, before decoding:
  a "decompression bomb" never allocates), raise ``ImageReadError`` naming the file.

Written files get the permissions of any new file under the user's umask (0644 under umask 022), not
the 0600 of the temporary file they are written to.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(OSError):
    """A file could not be decoded as an image."""


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (stable order = stable seeds)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: image folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> torch.Tensor:
    """Read an image file as a float32 RGB tensor (3, H, W) in [0, 1] (see module docstring).

    ``max_pixels``: refuse images with more pixels than this (from the header); None: PIL's own
    decompression-bomb limit (refused, not warned about, above twice ``Image.MAX_IMAGE_PIXELS``)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageReadError(
                    f"{path}: {im.width}x{im.height} = {im.width * im.height} pixels is over the limit of "
                    f"{max_pixels} (raise it with --max-pixels)"
                )
            im.load()
            array = _to_rgb_array(_to_srgb(ImageOps.exif_transpose(im)))
    except (FileNotFoundError, ImageReadError):
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)


def _to_srgb(im: Image.Image) -> Image.Image:
    """An image with an embedded ICC profile (and a mode ImageCms handles) converted to sRGB."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return im
    try:
        source = ImageCms.ImageCmsProfile(BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return im  # an unreadable profile: take the pixels as sRGB, as browsers do
    out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
    return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode=out_mode)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """PIL image -> float32 (H, W, 3) array in [0, 1]."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(im, dtype=np.float32)
        peak = 65535.0 if im.mode.startswith("I;16") or gray.max() > 255 else 255.0
        return np.repeat((gray / peak)[..., None], 3, axis=2).clip(0, 1)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + (1.0 - alpha)  # over white
    if im.mode == "RGB":
        return np.asarray(im, dtype=np.float32) / 255.0
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def to_levels(img: torch.Tensor, top: int = 255) -> torch.Tensor:
    """img in [0, 1] -> the nearest of the levels 0..top (float, not divided back), ties to even.

    Exact ties are common: a bilinear or bicubic resize of 8-bit images by a dyadic factor lands
    many values on k + 1/2 exactly, which float rounding noise (it depends on the thread split and
    the CPU's kernels) would push up on one machine and down on another. Values are first snapped to
    a 2^-32 grid, far coarser than float64 noise at 255 (~1e-13) and far finer than any value that
    is not a tie, so ties stay ties and round the same way everywhere. Meant for float64 (see
    srlab.data.degrade); on float32 the snap does nothing.
    """
    x = img.to(torch.promote_types(img.dtype, torch.float32)).clamp(0, 1) * top
    return (torch.round(x * 2.0**32) / 2.0**32).round()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounding to nearest."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image tensor of shape (3, H, W), got {tuple(image.shape)}")
    array = to_levels(image.detach()).to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set straight back
    os.umask(mask)
    return mask


def write_image(image: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Write (3, H, W) in [0, 1] as an 8-bit file (format from the suffix), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])
    return path


def to_vae_range(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range the VAE encoder expects."""
    return image * 2.0 - 1.0


def from_vae_range(image: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((image + 1.0) / 2.0).clamp(0.0, 1.0)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder under a temporary name; it appears at ``path`` only once the block succeeds.

    A stage that fails halfway leaves no folder that DVC (or the next stage) would take as complete.
    An existing folder at ``path`` is replaced.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
