"""Datasets: degradation operators and pipelines, the degrade stage, the training Dataset."""
