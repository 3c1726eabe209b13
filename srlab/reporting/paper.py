"""The paper's own numbers, to print beside ours (transcribed from its Tables 2-5; see
shared/paper/README.md of the project's sources and the paper's text, arXiv 2504.09887).

Scores are the challenge's partial scores: synthetic PSNR + 10 SSIM - 10 LPIPS, wild 0.1 MUSIQ +
10 MANIQA + 10 CLIPIQA, on the challenge's validation sets with SD2 base + the trained ControlNet.
"""

from __future__ import annotations

# (ablation axis, set kind, grid value as params.yaml names it) -> the paper's score
ABLATION_SCORES: dict[tuple[str, str, str], float] = {
    # Table 3: added prompts
    ("prompt", "wild", "none"): 20.2182,
    ("prompt", "wild", "positive"): 20.5054,
    ("prompt", "wild", "negative"): 19.7869,
    ("prompt", "synthetic", "none"): 33.2336,
    ("prompt", "synthetic", "positive"): 33.2312,
    ("prompt", "synthetic", "negative"): 33.2336,
    # Table 4: guidance scale
    ("guidance_scale", "wild", "8.5"): 20.2305,
    ("guidance_scale", "wild", "10.0"): 20.3897,
    ("guidance_scale", "wild", "12.0"): 20.4619,
    ("guidance_scale", "wild", "14.0"): 20.5054,
    ("guidance_scale", "synthetic", "1.1"): 33.2196,
    ("guidance_scale", "synthetic", "1.0"): 33.2335,
    ("guidance_scale", "synthetic", "0.9"): 33.2340,
    ("guidance_scale", "synthetic", "0.8"): 33.2338,
    # Table 5: semantic module, wild set
    ("extractor", "wild", "sam2"): 20.2305,
    ("extractor", "wild", "dape"): 19.7119,
}

# Table 5 in full: extractor -> the wild set's MUSIQ, MANIQA, CLIPIQA and score
TABLE5: dict[str, dict[str, float]] = {
    "dape": {"musiq": 70.3434, "maniqa": 0.5332, "clipiqa": 0.7345, "score": 19.7119},
    "sam2": {"musiq": 71.1969, "maniqa": 0.5532, "clipiqa": 0.7579, "score": 20.2305},
}
