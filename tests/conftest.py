"""Shared fixtures: the shared data folder and the real SmolLM2 tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent (looked in {SHARED_DATA}); compliance data unavailable")
    return SHARED_DATA


@pytest.fixture(scope="session")
def model_tokenizer():
    """The llguidance tokenizer of the packaged SmolLM2 GGUF (vocabulary only, no weights)."""
    from ananke.engines.model import default_model_path, load_tokenizer

    return load_tokenizer(default_model_path())
