"""The Ananke service on Modal GPUs: vLLM with llguidance, behind Ananke's own FastAPI app.

    pip install -e '.[deploy]' && modal setup                 # once
    modal secret create ananke-api-key ANANKE_API_KEY=<a long random key>
    modal secret create huggingface HF_TOKEN=<token>           # gated models (e.g. Llama); or
    export ANANKE_HF_SECRET=                                   #   no HF secret for open models
    modal run deploy/modal_app.py::download_weights           # optional: fetch weights on a CPU box
    modal deploy deploy/modal_app.py

`modal deploy` prints the web endpoint URL: that URL is MODAL_ENDPOINT, and the key is
MODAL_API_KEY. Everything is configured by environment variables at deploy time (they are baked
into the image, so the containers see the same values):

| variable | default | meaning |
|---|---|---|
| ANANKE_MODAL_APP | ananke | Modal app name |
| ANANKE_MODEL | meta-llama/Llama-3.1-8B-Instruct | Hugging Face model id |
| ANANKE_GPU | H100 | Modal GPU spec, e.g. L40S, A100-80GB, H100:2 (`:N` GPUs → tensor parallel N) |
| ANANKE_TENSOR_PARALLEL | the `:N` of ANANKE_GPU, else 1 | GPUs per replica |
| ANANKE_MAX_MODEL_LEN | the model's | context length |
| ANANKE_GPU_MEMORY_UTILIZATION | 0.90 | share of GPU memory vLLM may use |
| ANANKE_MIN_REPLICAS | 0 | containers kept warm (0: scale to zero) |
| ANANKE_MAX_REPLICAS | 4 | autoscaling ceiling |
| ANANKE_CONCURRENT_INPUTS | 32 | requests per container at once (vLLM batches them) |
| ANANKE_SCALEDOWN_WINDOW | 300 | idle seconds before a container stops |
| ANANKE_API_KEY_SECRET | ananke-api-key | Modal secret holding ANANKE_API_KEY |
| ANANKE_HF_SECRET | huggingface | Modal secret holding HF_TOKEN; empty for none |
| ANANKE_WEIGHTS_VOLUME | ananke-weights | Modal Volume caching the weights |
"""

from __future__ import annotations

import os
from pathlib import Path

import modal

REPO = Path(__file__).resolve().parents[1]
MINUTES = 60
WEIGHTS_DIR = "/weights"


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _gpu_count(gpu: str) -> int:
    _, _, count = gpu.partition(":")
    if not count:
        return 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"ANANKE_GPU {gpu!r}: the count after ':' must be a positive integer")
    return int(count)


APP_NAME = os.environ.get("ANANKE_MODAL_APP", "ananke")
MODEL = os.environ.get("ANANKE_MODEL", "meta-llama/Llama-3.1-8B-Instruct")
GPU = os.environ.get("ANANKE_GPU", "H100")
TENSOR_PARALLEL = _env_int("ANANKE_TENSOR_PARALLEL", _gpu_count(GPU), minimum=1)
MAX_MODEL_LEN = _env_int("ANANKE_MAX_MODEL_LEN", 0) or None
GPU_MEMORY_UTILIZATION = float(os.environ.get("ANANKE_GPU_MEMORY_UTILIZATION", "0.90"))
MIN_REPLICAS = _env_int("ANANKE_MIN_REPLICAS", 0)
MAX_REPLICAS = _env_int("ANANKE_MAX_REPLICAS", 4, minimum=1)
CONCURRENT_INPUTS = _env_int("ANANKE_CONCURRENT_INPUTS", 32, minimum=1)
SCALEDOWN_WINDOW_S = _env_int("ANANKE_SCALEDOWN_WINDOW", 5 * MINUTES, minimum=2)
API_KEY_SECRET = os.environ.get("ANANKE_API_KEY_SECRET", "ananke-api-key")
HF_SECRET = os.environ.get("ANANKE_HF_SECRET", "huggingface")
WEIGHTS_VOLUME = os.environ.get("ANANKE_WEIGHTS_VOLUME", "ananke-weights")

if _gpu_count(GPU) < TENSOR_PARALLEL:
    raise ValueError(f"ANANKE_TENSOR_PARALLEL={TENSOR_PARALLEL} needs as many GPUs; ANANKE_GPU is {GPU!r}")
if MIN_REPLICAS > MAX_REPLICAS:
    raise ValueError(f"ANANKE_MIN_REPLICAS={MIN_REPLICAS} is above ANANKE_MAX_REPLICAS={MAX_REPLICAS}")

# The settings travel into the image, so a container reads exactly what `modal deploy` read.
SETTINGS_ENV = {
    name: str(value)
    for name, value in {
        "ANANKE_MODAL_APP": APP_NAME, "ANANKE_MODEL": MODEL, "ANANKE_GPU": GPU,
        "ANANKE_TENSOR_PARALLEL": TENSOR_PARALLEL, "ANANKE_MAX_MODEL_LEN": MAX_MODEL_LEN or 0,
        "ANANKE_GPU_MEMORY_UTILIZATION": GPU_MEMORY_UTILIZATION, "ANANKE_MIN_REPLICAS": MIN_REPLICAS,
        "ANANKE_MAX_REPLICAS": MAX_REPLICAS, "ANANKE_CONCURRENT_INPUTS": CONCURRENT_INPUTS,
        "ANANKE_SCALEDOWN_WINDOW": SCALEDOWN_WINDOW_S, "ANANKE_API_KEY_SECRET": API_KEY_SECRET,
        "ANANKE_HF_SECRET": HF_SECRET, "ANANKE_WEIGHTS_VOLUME": WEIGHTS_VOLUME,
    }.items()
}  # fmt: skip

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install_from_pyproject(str(REPO / "pyproject.toml"), optional_dependencies=["gpu"])
    .env({**SETTINGS_ENV, "HF_HOME": f"{WEIGHTS_DIR}/huggingface"})  # weights land in the Volume
    .add_local_dir(REPO / "src" / "ananke", "/root/ananke")  # this checkout's package
)
weights = modal.Volume.from_name(WEIGHTS_VOLUME, create_if_missing=True)
secrets = [modal.Secret.from_name(API_KEY_SECRET, required_keys=["ANANKE_API_KEY"])]
if HF_SECRET:
    secrets.append(modal.Secret.from_name(HF_SECRET, required_keys=["HF_TOKEN"]))

app = modal.App(APP_NAME)


@app.function(
    image=image,
    gpu=GPU,
    volumes={WEIGHTS_DIR: weights},
    secrets=secrets,
    min_containers=MIN_REPLICAS,
    max_containers=MAX_REPLICAS,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=10 * MINUTES,  # one request at most (the service's own deadline is 5 minutes)
    startup_timeout=30 * MINUTES,  # the first start downloads the weights into the Volume
)
@modal.concurrent(max_inputs=CONCURRENT_INPUTS)
@modal.asgi_app()
def web():
    """The Ananke service (wire protocol v1 and the OpenAI-compatible routes) over vLLM."""
    from ananke.engines.vllm import VllmEngine, VllmSettings
    from ananke.server.app import ServerSettings, create_app

    engine = VllmSettings(
        MODEL,
        tensor_parallel_size=TENSOR_PARALLEL,
        gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        max_model_len=MAX_MODEL_LEN,
    )
    service = ServerSettings(
        api_key=os.environ["ANANKE_API_KEY"],
        max_concurrency=CONCURRENT_INPUTS,  # vLLM batches every running request together
        max_queue=4 * CONCURRENT_INPUTS,
    )
    return create_app(VllmEngine(engine), service)  # the app starts the engine in its event loop


@app.function(image=image, volumes={WEIGHTS_DIR: weights}, secrets=secrets[1:], timeout=60 * MINUTES)
def download_weights() -> None:
    """Fetch the model into the Volume on a CPU container, so GPU time is not spent downloading."""
    from huggingface_hub import snapshot_download

    snapshot_download(MODEL, ignore_patterns=["*.pt", "*.bin", "original/*"])
    weights.commit()
