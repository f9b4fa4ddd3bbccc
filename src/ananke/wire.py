"""The wire protocol (v1) as pydantic models, shared by the server and the HTTP backend.

These models are the contract: the server validates requests with them, the client builds
requests and reads answers with them, and the OpenAPI schema at /docs is generated from them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ananke.constraints.compiler import CompiledConstraints
from ananke.engines.base import GenerationResult
from ananke.types import (
    SAMPLING_FIELDS,
    PyConstraintIR,
    PyGenerationContext,
    PyGenerationRequest,
    PyValidationResult,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is a 422, never ignored


class WireConstraint(_Strict):
    name: str = Field(min_length=1, max_length=256)
    json_schema: str | None = None
    grammar: str | None = None
    regex_patterns: list[str] = Field(default_factory=list)

    def to_ir(self) -> PyConstraintIR:
        return PyConstraintIR(self.name, self.json_schema, self.grammar, list(self.regex_patterns))

    @classmethod
    def from_ir(cls, ir: PyConstraintIR) -> WireConstraint:
        return cls(**ir.to_dict())


class WireContext(_Strict):
    current_file: str | None = None
    language: str | None = None
    project_root: str | None = None


class GenerateBody(_Strict):
    """POST /v1/generate. Upper limits (prompt size, max_tokens, …) are the server's settings."""

    prompt: str
    constraints: list[WireConstraint] = Field(default_factory=list)
    max_tokens: int = Field(2048, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=5.0, allow_inf_nan=False)
    context: WireContext | None = None
    model: str | None = None
    seed: int | None = None
    stream: bool = False
    timeout_secs: float | None = Field(None, ge=1, allow_inf_nan=False)  # under 1 s no generation fits
    schema_mode: Literal["strict", "relaxed"] | None = None  # None: the server's --schema-mode
    # None: 3 for a relaxed schema, else 1. The Python client sends 1 and runs attempts itself.
    max_attempts: int | None = Field(None, ge=1, le=10)
    # Sampling after the constraint's mask (PyGenerationRequest has the ranges, checked there)
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    closed_objects: bool | None = None  # None: the server's default (closed)
    loop_guard: bool = True
    # False: the caller checks the output itself (the Python client does, with the same validator),
    # so the server skips its check and answers `validation: null`; then one attempt only.
    validate_output: bool = True

    @model_validator(mode="after")
    def _attempts_need_validation(self) -> GenerateBody:
        if not self.validate_output and (self.max_attempts or 1) > 1:
            raise ValueError("max_attempts above 1 needs validate_output: attempts retry rejected outputs")
        return self

    def to_request(self) -> PyGenerationRequest:
        return PyGenerationRequest(
            prompt=self.prompt,
            constraints_ir=[c.to_ir() for c in self.constraints],
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            context=PyGenerationContext(**self.context.model_dump()) if self.context else None,
            seed=self.seed,
            schema_mode=self.schema_mode,
            max_attempts=self.max_attempts,
            **{name: getattr(self, name) for name in SAMPLING_FIELDS},
            closed_objects=self.closed_objects,
            loop_guard=self.loop_guard,
        )

    @classmethod
    def from_request(
        cls, request: PyGenerationRequest, *, stream: bool = False, timeout_secs: float | None = None
    ) -> GenerateBody:
        return cls(
            prompt=request.prompt,
            constraints=[WireConstraint.from_ir(c) for c in request.constraints_ir],
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            context=WireContext(**request.context.to_dict()) if request.context else None,
            seed=request.seed,
            schema_mode=request.schema_mode,
            max_attempts=1,  # the client validates and retries itself
            validate_output=False,  # ... with the same validator: the server's check would be a repeat
            stream=stream,
            timeout_secs=timeout_secs,
            **{name: getattr(request, name) for name in SAMPLING_FIELDS},
            closed_objects=request.closed_objects,
            loop_guard=request.loop_guard,
        )


class GenerateResult(BaseModel):
    """The answer of /v1/generate (and the `done` event of a stream)."""

    text: str
    finish_reason: str
    model: str
    tokens_generated: int
    prompt_tokens: int
    generation_time_ms: float
    constraint_compile_time_ms: float
    forced_tokens: int = 0
    mask_time_us: float = 0.0
    cache_hit: bool = False
    enforced: list[str] = Field(default_factory=list)
    validated_only: list[str] = Field(default_factory=list)
    relaxed: list[str] = Field(default_factory=list)
    closed: list[str] = Field(default_factory=list)
    attempts: int = 1
    budget_closed: bool = False
    closing_tokens: int = 0
    budget_steered: int = 0
    loop_breaks: int = 0
    completion_search_us: float = 0.0
    # The service's own check of the output against the request's constraints (None: none given,
    # or the request said validate_output: false).
    validation: dict | None = None
    request_id: str = ""

    @classmethod
    def from_backend(
        cls,
        result: GenerationResult,
        compiled: CompiledConstraints,
        cache_hit: bool,
        request_id: str,
        validation: PyValidationResult | None = None,
        attempts: int = 1,
    ) -> GenerateResult:
        """The server's answer for an engine result."""
        return cls(
            text=result.text,
            finish_reason=result.finish_reason,
            model=result.model,
            tokens_generated=result.tokens_generated,
            prompt_tokens=result.prompt_tokens,
            generation_time_ms=round(result.generation_time_ms, 3),
            constraint_compile_time_ms=0.0 if cache_hit else round(compiled.compile_time_ms, 3),
            forced_tokens=result.forced_tokens,
            mask_time_us=round(result.mask_time_us, 1),
            cache_hit=cache_hit,
            enforced=list(compiled.enforced),
            validated_only=list(compiled.validated_only),
            relaxed=list(compiled.relaxed),
            closed=list(compiled.closed),
            attempts=attempts,
            budget_closed=result.budget_closed,
            closing_tokens=result.closing_tokens,
            budget_steered=result.budget_steered,
            loop_breaks=result.loop_breaks,
            completion_search_us=round(result.completion_search_us, 1),
            validation=validation.to_dict() if validation is not None else None,
            request_id=request_id,
        )

    def to_backend(self) -> GenerationResult:
        """The client's view of the answer (the service's compile time kept apart)."""
        return GenerationResult(
            text=self.text,
            finish_reason=self.finish_reason,
            model=self.model,
            tokens_generated=self.tokens_generated,
            prompt_tokens=self.prompt_tokens,
            generation_time_ms=self.generation_time_ms,
            forced_tokens=self.forced_tokens,
            mask_time_us=self.mask_time_us,
            remote_compile_time_ms=self.constraint_compile_time_ms,
            budget_closed=self.budget_closed,
            closing_tokens=self.closing_tokens,
            budget_steered=self.budget_steered,
            loop_breaks=self.loop_breaks,
            completion_search_us=self.completion_search_us,
        )


class CompileBody(_Strict):
    constraints: list[WireConstraint]
    schema_mode: Literal["strict", "relaxed"] | None = None
    closed_objects: bool | None = None  # None: the server's default (closed)


class CompileResult(BaseModel):
    hash: str
    compiled_at: int
    schema_: str = Field(alias="schema", serialization_alias="schema")
    enforced: list[str]
    validated_only: list[str]
    compile_time_ms: float
    warnings: list[str] = Field(default_factory=list)
    schema_mode: str = "strict"
    relaxed: list[str] = Field(default_factory=list)
    closed_objects: bool = True
    closed: list[str] = Field(default_factory=list)
    cache_hit: bool = False

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def from_compiled(cls, compiled: CompiledConstraints, cache_hit: bool) -> CompileResult:
        return cls(**compiled.to_dict(), cache_hit=cache_hit)


class Health(BaseModel):
    status: str  # "ok" or "unavailable"
    model: str
    engine: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    constraint: str | None = None
    field: str | None = None
    param: str | None = None  # OpenAI-compatible routes: the field at fault, as OpenAI names it
    code: int | None = None  # OpenAI-compatible routes: the HTTP status
    request_id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
