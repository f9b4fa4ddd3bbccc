"""deploy/modal_app.py imports with the `modal` package and defines the web endpoint and its
settings from the environment. Nothing is deployed: Modal objects stay local (unhydrated)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

modal = pytest.importorskip(
    "modal", reason="the modal package is not installed (pip install 'ananke[deploy]')"
)

APP_FILE = Path(__file__).resolve().parents[1] / "deploy" / "modal_app.py"


def _load(monkeypatch, **env: str):
    for name in list(os.environ):
        if name.startswith("ANANKE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("ananke_modal_app", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ananke_modal_app", module)
    spec.loader.exec_module(module)
    return module


def test_defaults_scale_to_zero_with_an_authenticated_web_endpoint(monkeypatch):
    m = _load(monkeypatch)
    assert isinstance(m.app, modal.App) and m.app.name == "ananke"
    assert isinstance(m.web, modal.Function) and m.web._is_web_endpoint()
    spec = m.web._spec_
    assert spec.gpus == "H100" and list(spec.volumes) == ["/weights"]
    assert [s.name for s in spec.secrets] == ["ananke-api-key", "huggingface"]
    assert (m.MIN_REPLICAS, m.MAX_REPLICAS, m.SCALEDOWN_WINDOW_S) == (0, 4, 300)
    assert m.CONCURRENT_INPUTS == 32 and m.TENSOR_PARALLEL == 1 and m.MAX_MODEL_LEN is None
    assert m.SETTINGS_ENV["ANANKE_MODEL"] == "meta-llama/Llama-3.1-8B-Instruct"


def test_settings_come_from_the_environment(monkeypatch):
    m = _load(
        monkeypatch,
        ANANKE_GPU="A100-80GB:2", ANANKE_MODEL="Qwen/Qwen2.5-7B-Instruct", ANANKE_MAX_REPLICAS="8",
        ANANKE_MIN_REPLICAS="1", ANANKE_CONCURRENT_INPUTS="64", ANANKE_SCALEDOWN_WINDOW="120",
        ANANKE_MAX_MODEL_LEN="8192", ANANKE_HF_SECRET="", ANANKE_MODAL_APP="ananke-staging",
    )  # fmt: skip
    assert m.app.name == "ananke-staging" and m.web._spec_.gpus == "A100-80GB:2"
    assert m.TENSOR_PARALLEL == 2  # from the GPU count
    assert [s.name for s in m.web._spec_.secrets] == ["ananke-api-key"]  # no HF secret
    assert (m.MIN_REPLICAS, m.MAX_REPLICAS, m.CONCURRENT_INPUTS, m.SCALEDOWN_WINDOW_S) == (1, 8, 64, 120)
    # the container reads the same values: they are baked into the image's environment
    assert m.SETTINGS_ENV["ANANKE_GPU"] == "A100-80GB:2" and m.SETTINGS_ENV["ANANKE_MAX_MODEL_LEN"] == "8192"


@pytest.mark.parametrize(
    "env, words",
    [
        ({"ANANKE_MAX_REPLICAS": "many"}, "ANANKE_MAX_REPLICAS must be an integer"),
        ({"ANANKE_MAX_REPLICAS": "0"}, "ANANKE_MAX_REPLICAS must be >= 1"),
        ({"ANANKE_MIN_REPLICAS": "5", "ANANKE_MAX_REPLICAS": "2"}, "above ANANKE_MAX_REPLICAS"),
        ({"ANANKE_GPU": "H100", "ANANKE_TENSOR_PARALLEL": "2"}, "needs as many GPUs"),
        ({"ANANKE_GPU": "H100:x"}, "positive integer"),
    ],
)
def test_bad_settings_fail_at_deploy_with_the_variable_named(monkeypatch, env, words):
    with pytest.raises(ValueError, match=words):
        _load(monkeypatch, **env)


def test_the_endpoint_serves_the_vllm_app(monkeypatch):
    """Called here (no GPU), the endpoint's function reaches the vLLM engine's install check."""
    from ananke.engines.vllm import vllm_available

    if vllm_available():
        pytest.skip("vllm is installed here; building the app would load a model")
    m = _load(monkeypatch, ANANKE_API_KEY="k")
    with pytest.raises(RuntimeError, match=r"pip install 'ananke\[gpu\]'"):
        m.web._raw_f_()
