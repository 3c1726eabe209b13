"""The SR model: SD2 + LR ControlNet + SAM2 semantic blocks, prompts, checkpoints."""
