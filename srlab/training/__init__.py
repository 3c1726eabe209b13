"""The train stage: the tiny prior, ControlNet + semantic blocks on Accelerate, validation."""
