import pytest

from ananke import Ananke, ConfigurationError, PyModalConfig
from ananke.config import parse_endpoint


@pytest.mark.parametrize(
    "value, kind",
    [
        ("https://user--ananke-serve.modal.run", "http"),
        ("http://127.0.0.1:8000/", "http"),
        ("openai+http://localhost:8000/v1", "openai"),
        ("openai+https://vllm.example.com/v1", "openai"),
        ("local", "local"),
    ],
)
def test_endpoint_forms(value, kind):
    assert parse_endpoint(value).kind == kind


def test_local_endpoint_with_model_path(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert parse_endpoint(f"local:{model}").model_path == str(model)
    with pytest.raises(ConfigurationError, match="does not exist"):
        parse_endpoint(f"local:{tmp_path}/missing.gguf")


@pytest.mark.parametrize(
    "value",
    ["invalid://url", "", "   ", "ftp://host", "http://", "localhost:8000", "http://h:99999"],
)
def test_bad_endpoints_raise_runtime_error_naming_the_value(value):
    with pytest.raises(ConfigurationError) as info:
        Ananke(modal_endpoint=value)
    assert isinstance(info.value, RuntimeError)
    if value.strip():
        assert value in str(info.value)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"timeout_secs": 0}, "timeout_secs"),
        ({"timeout_secs": -3}, "timeout_secs"),
        ({"cache_size": -1}, "cache_size"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_numbers(kwargs, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Ananke("local", **kwargs)


def test_modal_config_defaults_and_repr_hides_key():
    config = PyModalConfig("https://x.modal.run", api_key="sekrit")
    assert (config.model, config.timeout_secs, config.max_retries) == (
        "meta-llama/Llama-3.1-8B-Instruct", 300, 3,
    )  # fmt: skip
    assert "sekrit" not in repr(config)
    with pytest.raises(ConfigurationError):
        PyModalConfig("invalid://url")


def test_from_env(monkeypatch):
    monkeypatch.setenv("MODAL_ENDPOINT", "https://x.modal.run")
    monkeypatch.setenv("MODAL_API_KEY", "k")
    monkeypatch.setenv("MODAL_MODEL", "my/model")
    monkeypatch.setenv("ANANKE_CACHE_SIZE", "7")
    client = Ananke.from_env()
    assert client.config.endpoint_url == "https://x.modal.run"
    assert client.config.api_key == "k"
    assert client.config.model == "my/model"
    assert client._cache.limit == 7
    assert Ananke.from_env(cache_size=500)._cache.limit == 500
    config = PyModalConfig.from_env()
    assert (config.endpoint_url, config.api_key, config.model) == (
        "https://x.modal.run",
        "k",
        "my/model",
    )


def test_from_env_errors_name_the_variable(monkeypatch):
    monkeypatch.delenv("MODAL_ENDPOINT", raising=False)
    with pytest.raises(RuntimeError, match="MODAL_ENDPOINT"):
        Ananke.from_env()
    with pytest.raises(RuntimeError, match="MODAL_ENDPOINT"):
        PyModalConfig.from_env()
    monkeypatch.setenv("MODAL_ENDPOINT", "local")
    monkeypatch.setenv("ANANKE_CACHE_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="ANANKE_CACHE_SIZE"):
        Ananke.from_env()
    with pytest.raises(ConfigurationError, match="bogus"):
        Ananke.from_env(bogus=1)


def test_defaults_when_env_is_minimal(monkeypatch):
    for name in ("MODAL_API_KEY", "MODAL_MODEL", "ANANKE_CACHE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODAL_ENDPOINT", "local")
    client = Ananke.from_env()
    assert client.config.api_key is None
    assert client._cache.limit == 1000
