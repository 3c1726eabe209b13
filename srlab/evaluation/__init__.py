"""Evaluation protocols that stand alone from the rest of srlab (e.g. the NTIRE 2025 challenge scorer)."""
