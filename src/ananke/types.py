"""The public value objects of API.md and their wire (plain dict) form.

Requests are checked when built, so a bad value fails where it was written, not deep inside a
backend. Results are frozen: a response is a record of what happened, not something to edit.
Each object has `to_dict()` / `from_dict()`; the dicts are the JSON bodies of the wire protocol.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ananke.errors import InvalidRequestError

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SCHEMA_MODES = ("strict", "relaxed")
MAX_ATTEMPTS_LIMIT = 10


def _known_keys(cls: type, data: dict[str, Any], renames: dict[str, str] | None = None) -> dict:
    """Keep the keys `cls` knows (after renaming wire names); an unknown key is an error."""
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{cls.__name__}.from_dict expects a dict, got {type(data)}")
    renames = renames or {}
    names = {f.name for f in fields(cls)}
    out = {}
    for key, value in data.items():
        key = renames.get(key, key)
        if key not in names:
            raise InvalidRequestError(f"{cls.__name__}: unknown field {key!r}")
        out[key] = value
    return out


def check_schema_mode(owner: str, value: Any) -> str:
    if value not in SCHEMA_MODES:
        raise InvalidRequestError(f"{owner} must be one of {list(SCHEMA_MODES)}, got {value!r}")
    return value


# name: (lowest, highest, lowest included, integer); the ranges vLLM and OpenAI accept
SAMPLING_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "top_p": (0.0, 1.0, False, False),
    "top_k": (0, 1 << 20, True, True),
    "min_p": (0.0, 1.0, True, False),
    "repetition_penalty": (0.0, 10.0, False, False),
    "frequency_penalty": (-2.0, 2.0, True, False),
    "presence_penalty": (-2.0, 2.0, True, False),
}
SAMPLING_FIELDS = tuple(SAMPLING_RANGES)


def check_sampling(owner: str, values: Any) -> None:
    """Each sampling field of `values` (attributes) in its range, else InvalidRequestError."""
    for name, (low, high, low_included, integer) in SAMPLING_RANGES.items():
        value = getattr(values, name)
        ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
        ok = ok and math.isfinite(value) and (low <= value if low_included else low < value) and value <= high
        if not ok:
            kind = "an integer" if integer else "a number"
            bounds = f"{'[' if low_included else '('}{low:g}, {high:g}]"
            raise InvalidRequestError(f"{owner}.{name} must be {kind} in {bounds}, got {value!r}")


def _check_optional_str(owner: str, name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"{owner}.{name} must be a string or None, got {value!r}")


@dataclass
class PyConstraintIR:
    """One named constraint. Every field that is set must hold (logical AND)."""

    name: str
    json_schema: str | None = None
    grammar: str | None = None
    regex_patterns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidRequestError(f"PyConstraintIR.name must be a non-empty string, got {self.name!r}")
        _check_optional_str("PyConstraintIR", "json_schema", self.json_schema)
        _check_optional_str("PyConstraintIR", "grammar", self.grammar)
        if isinstance(self.regex_patterns, str) or not all(isinstance(p, str) for p in self.regex_patterns):
            raise InvalidRequestError(
                f"PyConstraintIR.regex_patterns must be a list of strings, got {self.regex_patterns!r}"
            )
        self.regex_patterns = list(self.regex_patterns)  # never alias the caller's list

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyConstraintIR:
        return cls(**_known_keys(cls, data))

    @classmethod
    def from_model(cls, model: Any, name: str | None = None) -> PyConstraintIR:
        """The JSON-schema constraint of a Pydantic model, TypedDict, dataclass or any type
        Pydantic's `TypeAdapter` handles (its validation-mode JSON schema). `name` defaults to the
        type's name. Read the answer back with `PyGenerationResponse.parsed(model)`."""
        from pydantic import PydanticUserError, TypeAdapter

        try:
            schema = TypeAdapter(model).json_schema()
        except (PydanticUserError, TypeError) as exc:
            raise InvalidRequestError(
                f"PyConstraintIR.from_model: no JSON schema for {model!r}: {exc}"
            ) from None
        return cls(name or getattr(model, "__name__", None) or "model", json_schema=json.dumps(schema))


@dataclass
class PyGenerationContext:
    """Where the code will live; shapes the prompt and selects syntax checks."""

    current_file: str | None = None
    language: str | None = None
    project_root: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_optional_str("PyGenerationContext", f.name, getattr(self, f.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyGenerationContext:
        return cls(**_known_keys(cls, data))


@dataclass
class PyGenerationRequest:
    """A prompt plus the constraints its output must satisfy.

    Added, optional: `seed` makes sampling at temperature > 0 reproducible; `schema_mode`
    ("strict" or "relaxed", None = the client's default) picks how JSON schemas with keywords no
    decoder can enforce are treated; `max_attempts` (1-10, None = 3 when something was relaxed,
    else 1) regenerates an output the validator rejects, with the reason in the prompt.

    Sampling (applied after the constraint's mask, so they never admit a forbidden token):
    `top_p` (0-1], `top_k` (0 = off), `min_p` [0-1), `repetition_penalty` (> 0, 1 = off),
    `frequency_penalty` and `presence_penalty` [-2, 2]. `closed_objects` (None = the client's
    default, True) decodes JSON objects without undeclared keys unless the schema says what they
    may be; `loop_guard` closes a constrained output that keeps repeating itself.
    """

    prompt: str
    constraints_ir: list[PyConstraintIR] = field(default_factory=list)
    max_tokens: int = 2048
    temperature: float = 0.7
    context: PyGenerationContext | None = None
    seed: int | None = None
    schema_mode: str | None = None
    max_attempts: int | None = None
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    closed_objects: bool | None = None
    loop_guard: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise InvalidRequestError(f"PyGenerationRequest.prompt must be a string, got {self.prompt!r}")
        if not all(isinstance(c, PyConstraintIR) for c in self.constraints_ir):
            raise InvalidRequestError("PyGenerationRequest.constraints_ir must hold PyConstraintIR objects")
        self.constraints_ir = list(self.constraints_ir)
        names = [c.name for c in self.constraints_ir]
        if len(set(names)) != len(names):
            raise InvalidRequestError(f"PyGenerationRequest: constraint names must be unique, got {names}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidRequestError(
                f"PyGenerationRequest.max_tokens must be a positive integer, got {self.max_tokens!r}"
            )
        if (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or not math.isfinite(self.temperature)
            or not 0 <= self.temperature <= 5
        ):
            raise InvalidRequestError(
                f"PyGenerationRequest.temperature must be a number in [0, 5], got {self.temperature!r}"
            )
        self.temperature = float(self.temperature)
        if self.context is not None and not isinstance(self.context, PyGenerationContext):
            raise InvalidRequestError("PyGenerationRequest.context must be a PyGenerationContext or None")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidRequestError(f"PyGenerationRequest.seed must be an integer, got {self.seed!r}")
        if self.schema_mode is not None:
            check_schema_mode("PyGenerationRequest.schema_mode", self.schema_mode)
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT
        ):
            raise InvalidRequestError(
                f"PyGenerationRequest.max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT} "
                f"or None, got {self.max_attempts!r}"
            )
        check_sampling("PyGenerationRequest", self)
        for name in ("top_p", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty"):
            setattr(self, name, float(getattr(self, name)))
        if self.closed_objects is not None and not isinstance(self.closed_objects, bool):
            raise InvalidRequestError(
                f"PyGenerationRequest.closed_objects must be a bool or None, got {self.closed_objects!r}"
            )
        if not isinstance(self.loop_guard, bool):
            raise InvalidRequestError(
                f"PyGenerationRequest.loop_guard must be a bool, got {self.loop_guard!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: constraints travel under the key `constraints`."""
        return {
            "prompt": self.prompt,
            "constraints": [c.to_dict() for c in self.constraints_ir],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "context": self.context.to_dict() if self.context else None,
            "seed": self.seed,
            "schema_mode": self.schema_mode,
            "max_attempts": self.max_attempts,
            **{name: getattr(self, name) for name in SAMPLING_FIELDS},
            "closed_objects": self.closed_objects,
            "loop_guard": self.loop_guard,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyGenerationRequest:
        values = _known_keys(cls, data, renames={"constraints": "constraints_ir"})
        values["constraints_ir"] = [
            c if isinstance(c, PyConstraintIR) else PyConstraintIR.from_dict(c)
            for c in values.get("constraints_ir") or []
        ]
        if isinstance(values.get("context"), dict):
            values["context"] = PyGenerationContext.from_dict(values["context"])
        return cls(**values)


@dataclass(frozen=True)
class PyProvenance:
    """Where the output came from: the model actually used, when, under which constraints."""

    model: str
    timestamp: int
    constraints_applied: list[str]
    original_intent: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyProvenance:
        return cls(**_known_keys(cls, data))


@dataclass(frozen=True)
class PyValidationResult:
    """The independent checker's verdict, one entry per constraint.

    `errors` (added) maps each violated constraint to a human-readable reason; `not_checked`
    (added) lists checks that could not run, which are never counted as satisfied.
    """

    all_satisfied: bool
    satisfied: list[str]
    violated: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    not_checked: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyValidationResult:
        return cls(**_known_keys(cls, data))


@dataclass(frozen=True)
class PyGenerationMetadata:
    """Measured numbers of one generation. The first four fields are the original API.

    `finish_reason` "stop" means the output is complete (the constraint accepts it); "length"
    that it was cut at max_tokens. The budget fields say how it was finished.

    With several attempts (see `PyGenerationRequest.max_attempts`) the numbers describe the
    attempt whose output is returned, and `attempts` counts them all.
    """

    tokens_generated: int
    generation_time_ms: int
    avg_token_time_us: int
    constraint_compile_time_ms: int
    prompt_tokens: int = 0
    forced_tokens: int = 0
    mask_time_us: int = 0
    finish_reason: str = "stop"
    cache_hit: bool = False
    attempts: int = 1
    relaxed: list[str] = field(default_factory=list)
    budget_closed: bool = False  # the end was forced (the shortest completion) to fit max_tokens
    closing_tokens: int = 0  # tokens that forced ending took (also after a loop break)
    budget_steered: int = 0  # sampled tokens refused because no complete output fitted after them
    loop_breaks: int = 0  # times the loop guard closed a repeating output
    completion_search_us: int = 0  # time spent finding completions, apart from mask_time_us

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyGenerationMetadata:
        return cls(**_known_keys(cls, data))


@dataclass(frozen=True)
class PyGenerationResponse:
    """The generated code with its provenance, validation and metadata.

    `text` (added) is the model's raw answer; `code` is exactly `text` for constrained requests
    and the extracted code block for unconstrained ones.
    """

    code: str
    provenance: PyProvenance
    validation: PyValidationResult
    metadata: PyGenerationMetadata
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def parsed(self, model: Any) -> Any:
        """`code` validated as an instance of `model` (a Pydantic model, TypedDict, dataclass or
        any type Pydantic's `TypeAdapter` handles); pydantic.ValidationError if it does not fit."""
        from pydantic import TypeAdapter

        return TypeAdapter(model).validate_json(self.code)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyGenerationResponse:
        values = _known_keys(cls, data)
        values["provenance"] = PyProvenance.from_dict(values["provenance"])
        values["validation"] = PyValidationResult.from_dict(values["validation"])
        values["metadata"] = PyGenerationMetadata.from_dict(values["metadata"])
        return cls(**values)
