"""Inference engines: token-level decoding with llguidance masks."""
