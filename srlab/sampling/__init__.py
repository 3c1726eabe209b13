"""Inference: the SR pipeline, tiling, colour fix, upscaling files and the infer stage."""
