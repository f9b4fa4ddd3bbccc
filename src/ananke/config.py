"""Configuration: endpoint parsing, `PyModalConfig`, environment variables.

Precedence everywhere: explicit arguments > environment variables > defaults.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ananke.errors import ConfigurationError
from ananke.types import DEFAULT_MODEL, check_schema_mode

ENV_ENDPOINT = "MODAL_ENDPOINT"
ENV_API_KEY = "MODAL_API_KEY"
ENV_MODEL = "MODAL_MODEL"
ENV_CACHE_SIZE = "ANANKE_CACHE_SIZE"
DEFAULT_CACHE_SIZE = 1000

ENDPOINT_FORMS = (
    "'http(s)://host[:port]' (an Ananke service), 'openai+http(s)://host[:port]/v1' "
    "(a vLLM or SGLang server), 'local' or 'local:/path/model.gguf' (in-process engine)"
)


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint. `url` is set for http/openai, `model_path` may be set for local."""

    kind: Literal["http", "openai", "local"]
    url: str | None = None
    model_path: str | None = None


def parse_endpoint(value: Any) -> Endpoint:
    """Parse one of the endpoint forms of DESIGN.md, or raise ConfigurationError naming it."""
    if not isinstance(value, str):
        raise ConfigurationError(f"endpoint must be a string, got {value!r}")
    text = value.strip()
    if not text:
        raise ConfigurationError(f"endpoint is empty; expected one of {ENDPOINT_FORMS}")
    if text == "local":
        return Endpoint("local")
    if text.startswith("local:"):
        path = text[len("local:") :]
        if not path:
            raise ConfigurationError(f"endpoint {value!r} names no model file after 'local:'")
        if not Path(path).expanduser().is_file():
            raise ConfigurationError(f"endpoint {value!r}: model file {path!r} does not exist")
        return Endpoint("local", model_path=str(Path(path).expanduser()))
    kind: Literal["http", "openai"] = "http"
    url = text
    if text.startswith("openai+"):
        kind, url = "openai", text[len("openai+") :]
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"malformed endpoint {value!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"malformed endpoint {value!r}; expected one of {ENDPOINT_FORMS}")
    if port == 0:
        raise ConfigurationError(f"malformed endpoint {value!r}: port 0")
    return Endpoint(kind, url=url.rstrip("/"))


def parse_endpoints(value: Any) -> list[Endpoint]:
    """One endpoint, or several remote ones separated by commas (the client fails over between them)."""
    if not isinstance(value, str) or "," not in value or value.strip().startswith("local"):
        return [parse_endpoint(value)]
    parts = [part.strip() for part in value.split(",")]
    if not all(parts):
        raise ConfigurationError(f"endpoint list {value!r} has an empty entry")
    endpoints = [parse_endpoint(part) for part in parts]
    if any(e.kind == "local" for e in endpoints):
        raise ConfigurationError(f"endpoint list {value!r}: only remote endpoints can be listed, not 'local'")
    return endpoints


def check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


def check_non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be a non-negative integer, got {value!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} must be an integer, got {raw!r}") from None


def env_required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set; set it to one of {ENDPOINT_FORMS}")
    return value


@dataclass(frozen=True)
class PyModalConfig:
    """Connection settings for a generation service (or the local engine)."""

    endpoint_url: str
    model: str = DEFAULT_MODEL
    api_key: str | None = None
    timeout_secs: int = 300
    max_retries: int = 3

    def __post_init__(self) -> None:
        parse_endpoints(self.endpoint_url)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(f"model must be a non-empty string, got {self.model!r}")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise ConfigurationError("api_key must be a string or None")
        check_positive("timeout_secs", self.timeout_secs)
        check_non_negative_int("max_retries", self.max_retries)

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint (the first one of a comma-separated list)."""
        return parse_endpoints(self.endpoint_url)[0]

    @property
    def endpoints(self) -> list[Endpoint]:
        return parse_endpoints(self.endpoint_url)

    def __repr__(self) -> str:  # never show the key itself
        key = "None" if self.api_key is None else "'***'"
        return (
            f"PyModalConfig(endpoint_url={self.endpoint_url!r}, model={self.model!r}, "
            f"api_key={key}, timeout_secs={self.timeout_secs!r}, max_retries={self.max_retries!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyModalConfig:
        return cls(**data)

    @staticmethod
    def from_env() -> PyModalConfig:
        """Read MODAL_ENDPOINT (required), MODAL_API_KEY and MODAL_MODEL."""
        return PyModalConfig(
            endpoint_url=env_required(ENV_ENDPOINT),
            model=os.environ.get(ENV_MODEL) or DEFAULT_MODEL,
            api_key=os.environ.get(ENV_API_KEY) or None,
        )


# ---------------------------------------------------------------- the client's options

CLIENT_PARAMS = (
    "modal_endpoint", "modal_api_key", "model", "timeout_secs", "enable_cache", "cache_size",
    "max_retries", "compile_limits", "schema_in_prompt", "schema_mode", "closed_objects",
)  # fmt: skip


def check_client_options(cache_size: Any, enable_cache: Any, schema_mode: Any, closed_objects: Any) -> str:
    """Check `Ananke`'s own options (the endpoint's are PyModalConfig's); returns the schema mode."""
    check_non_negative_int("cache_size", cache_size)
    if not isinstance(enable_cache, bool):
        raise ConfigurationError(f"enable_cache must be a bool, got {enable_cache!r}")
    mode = check_schema_mode("schema_mode", schema_mode)
    if not isinstance(closed_objects, bool):
        raise ConfigurationError(f"closed_objects must be a bool, got {closed_objects!r}")
    return mode


def client_settings_from_env(overrides: dict[str, Any]) -> dict[str, Any]:
    """`Ananke`'s keyword arguments from MODAL_ENDPOINT, MODAL_API_KEY, MODAL_MODEL and
    ANANKE_CACHE_SIZE; the keyword `overrides` win over the environment."""
    overrides = dict(overrides)
    unknown = set(overrides) - set(CLIENT_PARAMS)
    if unknown:
        raise ConfigurationError(
            f"unknown Ananke.from_env override(s): {sorted(unknown)}; known: {list(CLIENT_PARAMS)}"
        )
    settings: dict[str, Any] = {
        "modal_endpoint": overrides.pop("modal_endpoint", None) or env_required(ENV_ENDPOINT),
        "modal_api_key": os.environ.get(ENV_API_KEY) or None,
        "model": os.environ.get(ENV_MODEL) or DEFAULT_MODEL,
    }
    if "cache_size" not in overrides:
        settings["cache_size"] = env_int(ENV_CACHE_SIZE, DEFAULT_CACHE_SIZE)
    settings.update(overrides)
    return settings
