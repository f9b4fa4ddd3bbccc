"""The vLLM engine: the mapping to vLLM's parameters is tested here without vLLM; the engine
itself runs only where `vllm` and a CUDA GPU are present (skipped elsewhere, with the reason)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from ananke import ConfigurationError, PyConstraintIR, PyGenerationRequest
from ananke.constraints import compile_constraints
from ananke.engines.vllm import VllmSettings, engine_args, require_vllm, sampling_args, vllm_available
from tests.test_compiler import SEED_GRAMMAR, SEED_SCHEMA


def _sampling(constraints: list[PyConstraintIR], **kw) -> dict:
    request = PyGenerationRequest("p", constraints, max_tokens=64, temperature=0.0, **kw)
    return sampling_args(request, compile_constraints(constraints))


def test_engine_args_select_llguidance_and_the_cli_settings():
    args = engine_args(VllmSettings("Qwen/Qwen2.5-0.5B-Instruct", 2, 0.8, 4096, download_dir="/weights"))
    assert args == {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "structured_outputs_config": {"backend": "guidance"},
        "max_model_len": 4096,
        "download_dir": "/weights",
    }
    assert "max_model_len" not in engine_args(VllmSettings("m"))


@pytest.mark.parametrize(
    "bad",
    [dict(model=" "), dict(model="m", tensor_parallel_size=0), dict(model="m", gpu_memory_utilization=1.5),
     dict(model="m", max_model_len=0)],
)  # fmt: skip
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigurationError):
        VllmSettings(**bad)


def test_sampling_args_carry_each_constraint_kind():
    assert _sampling([]) == {"max_tokens": 64, "temperature": 0.0}
    assert _sampling([], seed=7)["seed"] == 7
    schema = _sampling([PyConstraintIR("j", json_schema=SEED_SCHEMA)])["structured_outputs"]
    # the schema as compiled: objects closed (the default), compact JSON
    closed = {**json.loads(SEED_SCHEMA), "additionalProperties": False}
    assert schema == {"json": {**closed, "x-guidance": {"whitespace_flexible": False}}}
    regex = _sampling([PyConstraintIR("r", regex_patterns=[r"^\d{3}$"])])["structured_outputs"]
    assert regex == {"regex": r"\d{3}"}
    grammar = _sampling([PyConstraintIR("g", grammar=SEED_GRAMMAR)])["structured_outputs"]
    assert grammar["grammar"].startswith("start: root\n")


@pytest.mark.skipif(vllm_available(), reason="vllm is installed here")
def test_missing_vllm_fails_at_once_with_the_install_hint():
    with pytest.raises(ConfigurationError, match=r"pip install 'ananke\[gpu\]'"):
        require_vllm()
    result = subprocess.run(
        [sys.executable, "-m", "ananke", "serve", "--engine", "vllm", "--model", "org/model"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'ananke[gpu]'" in result.stderr


def _gpu_present() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(
    not (vllm_available() and _gpu_present()), reason="needs the vllm package and a CUDA GPU"
)


@needs_gpu
async def test_vllm_engine_enforces_a_json_schema():  # pragma: no cover - GPU machines only
    from ananke.constraints.validate import validate
    from ananke.engines.vllm import VllmEngine

    model = os.environ.get("ANANKE_VLLM_TEST_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    engine = VllmEngine(VllmSettings(model, gpu_memory_utilization=0.5, max_model_len=2048))
    await engine.start()
    try:
        assert await engine.health()
        constraints = [PyConstraintIR("result_json", json_schema=SEED_SCHEMA)]
        request = PyGenerationRequest("Report the result.", constraints, max_tokens=64, temperature=0.0)
        items = [item async for item in engine.stream(request, compile_constraints(constraints))]
        result = items[-1]
        assert "".join(items[:-1]) == result.text and result.tokens_generated > 0
        assert validate(result.text, constraints).all_satisfied, result.text
    finally:
        await engine.aclose()
