"""srlab: semantic-guided diffusion super-resolution for UGC images, reproducible end to end."""

__version__ = "0.1.0"
