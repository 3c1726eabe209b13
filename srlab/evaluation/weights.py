"""Learned-metric weights: which files each metric loads, where they must be, and building offline.

Weights are looked up, never downloaded, in a torch hub folder (``evaluate.torch_hub_dir``, default
``torch.hub.get_dir()``, i.e. ``~/.cache/torch/hub``), laid out as pyiqa, torchvision and CLIP leave it
after an online run: ``pyiqa/<file>`` (pyiqa's own cache), ``checkpoints/<file>`` (torchvision),
``clip/RN50.pt``. ``METRICS[name].files`` lists each file and its URL; ``weights_table`` shows what is
present. To fill it, download those URLs into that layout (or copy ``~/.cache/torch/hub`` from a machine
where ``pyiqa.create_metric(name)`` ran). MANIQA's and HyperIQA's pyiqa checkpoints hold their whole
network (loaded strictly), so the timm ImageNet backbones that pyiqa would fetch first are not needed:
they are built empty and overwritten. A metric whose files are missing is reported unavailable with the
reason (``missing_weights``), and so is every score that needs it; construction runs with sockets
disabled (``no_network``, inside ``pyiqa_offline``).
"""

from __future__ import annotations

import hashlib
import importlib
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from srlab.evaluation.params import EvaluateParams

_PYIQA_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
_RN50_SHA = "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"


@dataclass(frozen=True)
class WeightFile:
    """A file a learned metric loads, at ``<torch_hub_dir>/<path>`` (where its own loader looks)."""

    path: str
    url: str
    sha256: str | None = None  # set where the loader checks it (CLIP re-downloads on a mismatch)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: what it measures, which way is better, what it needs. Learned = has ``files``."""

    mode: Literal["FR", "NR"]  # full-reference (needs HR) or no-reference
    about: str  # the protocol in one line ({y}: which Y)
    files: tuple[WeightFile, ...] = ()  # learned metrics: built by pyiqa.create_metric(<same name>)
    lower_better: bool = False
    module: str | None = None  # a module that pyiqa's code imports for it
    full_checkpoint: bool = False  # pyiqa's checkpoint holds the whole net, backbone included (strict)
    bundled: str | None = None  # a parameter file shipped in srlab/evaluation/assets/ (pretrained_model_path)
    min_side: int = 0  # smallest image side it can score (NIQE: its 96 px block)


ASSETS = Path(__file__).parent / "assets"  # bundled metric parameters (assets/README.md: where from)


def _hf(name: str) -> tuple[WeightFile, ...]:
    return (WeightFile(f"pyiqa/{name}", _PYIQA_URL + name),)


_ALEXNET = WeightFile(  # torchvision's ImageNet AlexNet, which pyiqa's LPIPS always loads first
    "checkpoints/alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
)
_CLIP = WeightFile(
    "clip/RN50.pt", f"https://openaipublic.azureedge.net/clip/models/{_RN50_SHA}/RN50.pt", _RN50_SHA
)
METRICS: dict[str, MetricSpec] = {
    "psnr_rgb": MetricSpec("FR", "PSNR dB over R,G,B, float64, no eps (pyiqa psnr)"),
    "psnr_y": MetricSpec("FR", "PSNR dB over {y}, float64, no eps (pyiqa psnry)"),
    "ssim_rgb": MetricSpec("FR", "SSIM per R,G,B then mean, on 8-bit values (pyiqa ssimc)"),
    "ssim_y": MetricSpec("FR", "SSIM on {y}, on 8-bit values (pyiqa ssim)"),
    "psnr_ntire": MetricSpec(
        "FR", "the NTIRE 2025 organisers' PSNR: Y of BT.601 YCbCr unrounded, 4 px border cut, float64"
    ),
    "ssim_ntire": MetricSpec(
        "FR", "the organisers' SSIM: BT.601 Y, 4 px cut, 11x11 Gaussian sigma 1.5, 'valid' (MATLAB)"
    ),
    "lpips": MetricSpec(
        "FR", "pyiqa lpips: AlexNet v0.1, RGB", (*_hf("LPIPS_v0.1_alex-df73285e.pth"), _ALEXNET), True
    ),
    "musiq": MetricSpec("NR", "pyiqa musiq: KonIQ-10k, ~0-100", _hf("musiq_koniq_ckpt-e95806b9.pth")),
    "maniqa": MetricSpec(
        "NR", "pyiqa maniqa: KonIQ-10k, ~0-1", _hf("ckpt_koniq10k.pt"), full_checkpoint=True
    ),
    "clipiqa": MetricSpec("NR", "pyiqa clipiqa: CLIP RN50, antonym prompts, ~0-1", (_CLIP,), module="clip"),
    "nrqm": MetricSpec("NR", "pyiqa nrqm (Ma et al.), ~0-10", _hf("NRQM_model.mat")),
    "piqe": MetricSpec(
        "NR", "pyiqa piqe (Venkatanath et al.), ~0-100, hand-crafted, no weights", lower_better=True
    ),
    "niqe": MetricSpec(
        "NR",
        "pyiqa niqe (Mittal et al.), Y of YIQ, ~2-15; the pristine model of BasicSR 1.4.2 (bundled)",
        lower_better=True,
        bundled="niqe_pris_params.mat",
        min_side=96,
    ),
    "hyperiqa": MetricSpec(
        "NR",
        "pyiqa hyperiqa: ResNet50, KonIQ-10k, ~0-1",
        _hf("HyperIQA-resnet50-koniq10k-c96c41b1.pth"),
        full_checkpoint=True,
    ),
}


# ---------------------------------------------------------------------------------------------
# Local cache only, never the network
# ---------------------------------------------------------------------------------------------


class NetworkBlocked(OSError):
    """Something tried to open a network connection while a metric was being built."""


@contextmanager
def no_network(what: str) -> Iterator[None]:
    """Make every socket connect and DNS lookup fail at once while ``what`` runs (not thread-safe).

    A backstop behind the file checks: offline, a download would hang or fail obscurely; here it fails
    immediately with a message that names the culprit.
    """

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkBlocked(f"{what} tried to reach the network; srlab never downloads metric weights")

    sock, saved = socket.socket, (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)
    sock.connect = sock.connect_ex = socket.getaddrinfo = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        sock.connect, sock.connect_ex, socket.getaddrinfo = saved  # type: ignore[method-assign]


def hub_dir(params: EvaluateParams) -> Path:
    """The torch hub folder that holds the learned-metric weights (see module docstring)."""
    return Path(params.torch_hub_dir or torch.hub.get_dir()).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_weights(name: str, hub: Path) -> str | None:
    """Why metric ``name`` cannot be built from ``hub`` (files, checksums, imports), or None if it can."""
    spec, problems = METRICS[name], []
    for f in spec.files:
        path = hub / f.path
        if not path.is_file():
            problems.append(f"missing {path} (download {f.url})")
        elif f.sha256 and _sha256(path) != f.sha256:
            problems.append(
                f"{path} has the wrong sha256 (pyiqa would re-download it); replace it with {f.url}"
            )
    if spec.module:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(spec.module)
        except Exception as err:
            hint = "; install setuptools<81, which still has it" if "pkg_resources" in str(err) else ""
            problems.append(f"pyiqa's {name} imports `{spec.module}`, which fails ({err}){hint}")
    return "; ".join(problems) or None


def weights_table(params: EvaluateParams) -> list[dict[str, str]]:
    """One row per weight file of every learned metric: where it must be, whether it is, where from."""
    hub = hub_dir(params)
    return [
        {"metric": n, "file": str(hub / f.path), "present": str((hub / f.path).is_file()), "url": f.url}
        for n, spec in METRICS.items()
        for f in spec.files
    ]


@contextmanager
def pyiqa_offline(hub: Path, empty_backbone: bool) -> Iterator[None]:
    """Point pyiqa, torchvision and CLIP at ``hub`` and block the network while a metric is built."""
    import pyiqa.utils.download_util as download_util
    import timm

    saved = download_util.DEFAULT_CACHE_DIR, torch.hub.get_dir(), timm.create_model
    download_util.DEFAULT_CACHE_DIR = str(hub / "pyiqa")  # read by pyiqa's load_file_from_url per call
    torch.hub.set_dir(str(hub))  # torchvision's checkpoints/ and CLIP's clip/
    if empty_backbone:  # the strict checkpoint load that follows overwrites every backbone weight
        create = timm.create_model
        timm.create_model = lambda *a, **kw: create(*a, **{**kw, "pretrained": False})
    try:
        with no_network("building a pyiqa metric"):
            yield
    finally:
        download_util.DEFAULT_CACHE_DIR, _, timm.create_model = saved
        torch.hub.set_dir(saved[1])
