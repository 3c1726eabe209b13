"""Cost of the RAM / DAPE tagger (srlab.models.tagging) and its paper-size parameter counts.

Prints figures, asserts nothing.

    python benchmarks/bench_tagger.py                 # tiny tagger ms/image (CPU threads) + paper-size counts
    python benchmarks/bench_tagger.py --paper-time    # + one paper-size image with random weights (~1 GB)

Tiny: the tiny profile's random tagger (params.yaml, ``ram_checkpoint: null``) tags the LR images of
``build/degrade/eval`` if they are there (else random 192 px images), as the tag stage does; the ``dape``
extractor's c_sem is timed on a training batch. Paper size: parameters counted on the meta device (no
memory, no weights) against the published Swin-L size and the counts of the released classes
(docs/research/ram_dape.md, section 3).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlab import io  # noqa: E402
from srlab.config import load_params  # noqa: E402
from srlab.models.params import ModelParams  # noqa: E402
from srlab.models.ram import LoraConfig, Ram, RamConfig  # noqa: E402
from srlab.models.ram_checkpoint import build_skeleton, ram_file_layout  # noqa: E402
from srlab.models.tagging import DapeExtractor, build_tagger, tag_image  # noqa: E402

# Published / measured on the released classes (docs/research/ram_dape.md, sections 3-4)
SWIN_L_PUBLISHED = 197_000_000  # microsoft/Swin-Transformer README:123 (Swin-L 384, with a 1000-class head)
SWIN_L_HEAD = 1536 * 1000 + 1000  # the ImageNet head that RAM's Swin does not have
RELEASED = {  # the official RAM / RAMLora classes on the meta device
    "visual_encoder": 195_198_516,
    "tagger (encoder, image_proj, head, label_embed, wordvec_proj, fc)": 212_117_045,
    "whole RAM module, unique (with Tag2Text parts)": 492_591_217,
    "DAPE LoRA acting on tagging and c_sem": 667_648,
}
BUFFERS = re.compile(r"(relative_position_index|attn_mask|position_ids)$")
# shared Parameters stored twice: the tagging head's layers in tag_encoder (ram.py:187-188) and the BERT LM
# head's decoder bias, which transformers ties to ``predictions.bias``
TIED = re.compile(
    r"^tag_encoder\.encoder\.layer\.[01]\.(crossattention|intermediate|output)\.|^text_decoder\.cls\.predictions\.decoder\.bias$"
)


def ms_per_call(fn, n: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return 1000 * (time.perf_counter() - start) / n


def tiny_figures(model: ModelParams, threads: int) -> None:
    torch.set_num_threads(threads)
    images = [
        io.read_image(p)
        for d in sorted((ROOT / "build/degrade/eval").glob("*/lr"))
        for p in io.list_images(d)
    ]
    source = f"{len(images)} eval LR images of build/degrade"
    if not images:
        g = torch.Generator().manual_seed(0)
        images, source = [torch.rand(3, 192, 192, generator=g) for _ in range(8)], "8 random 192 px images"
    print(f"tiny tagger on {threads} CPU thread(s), {source} (random weights: the tags are meaningless)")
    for kind in ("ram", "dape"):
        tagger = build_tagger(model, kind)
        with torch.no_grad():
            ms = ms_per_call(lambda t=tagger: [tag_image(t, im) for im in images], 3) / len(images)
        print(f"  {kind}: {ms:.1f} ms/image, {sum(p.numel() for p in tagger.parameters()):,} parameters")
    extractor = DapeExtractor(build_tagger(model, "dape"), model.semantic.width)
    batch = torch.rand(4, 3, 64, 64)
    ms = ms_per_call(lambda: extractor(batch), 10)
    print(f"  dape extractor, batch 4 x 64 px -> {tuple(extractor(batch).shape)}: {ms:.1f} ms/batch")


def paper_counts() -> None:
    cfg = RamConfig.paper()
    ram, dape = build_skeleton(cfg), build_skeleton(cfg, LoraConfig())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    lora = sum(p.numel() for n, p in dape.named_parameters() if "lora_" in n)
    layout = ram_file_layout(cfg)
    unique = sum(
        torch.Size(s).numel() for k, s in layout.items() if not BUFFERS.search(k) and not TIED.match(k)
    )
    ours = {
        "visual_encoder": count(ram.visual_encoder),
        "tagger (encoder, image_proj, head, label_embed, wordvec_proj, fc)": count(ram),
        "whole RAM module, unique (with Tag2Text parts)": unique,
        "DAPE LoRA acting on tagging and c_sem": lora,
    }
    print("paper size (meta device)                                   srlab      released classes")
    for name, value in ours.items():
        print(f"  {name:<64} {value:>13,} {RELEASED[name]:>13,}")
    swin = ours["visual_encoder"] + SWIN_L_HEAD
    print(f"  Swin-L 384 + 1000-class head: {swin / 1e6:.1f}M vs published {SWIN_L_PUBLISHED / 1e6:.0f}M")
    print(f"  c_sem (dape extractor): ({cfg.num_image_tokens}, {cfg.embed_width}) per image")


def paper_time(threads: int) -> None:
    torch.set_num_threads(threads)
    cfg = RamConfig.paper()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ram = Ram(cfg).eval()  # random weights: the cost does not depend on their values
    image = torch.rand(1, 3, 384, 384)
    with torch.no_grad():
        ms = ms_per_call(lambda: ram.tag_mask(ram.preprocess(image)), 1)
        emb = ms_per_call(lambda: ram.image_embeds(ram.preprocess(image)), 1)
    print(
        f"paper-size tagger, random weights, {threads} thread(s): {ms / 1000:.1f} s/image "
        f"({emb / 1000:.1f} s of it the image embeddings)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paper-time", action="store_true", help="also time one paper-size image")
    args = parser.parse_args()
    model = load_params(ROOT / "params.yaml", "tiny", {"model": ModelParams}).model
    model = dataclasses.replace(model, prompts=dataclasses.replace(model.prompts, ram_checkpoint=None))
    tiny_figures(model, args.threads)
    paper_counts()
    if args.paper_time:
        paper_time(args.threads)


if __name__ == "__main__":
    main()
