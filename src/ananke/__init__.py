"""Ananke: constrained code generation. Every token satisfies your JSON Schema, grammar or regex."""

from ananke.client import Ananke
from ananke.config import PyModalConfig
from ananke.constraints.tools import parse_calls, tool_constraint
from ananke.errors import (
    AnankeError,
    AuthenticationError,
    BackendError,
    ConfigurationError,
    ConstraintCompileError,
    GenerationTimeout,
    InvalidRequestError,
    ServiceError,
)
from ananke.types import (
    PyConstraintIR,
    PyGenerationContext,
    PyGenerationMetadata,
    PyGenerationRequest,
    PyGenerationResponse,
    PyProvenance,
    PyValidationResult,
)

__version__ = "0.2.0"

__all__ = [
    "Ananke",
    "AnankeError",
    "AuthenticationError",
    "BackendError",
    "ConfigurationError",
    "ConstraintCompileError",
    "GenerationTimeout",
    "InvalidRequestError",
    "PyConstraintIR",
    "PyGenerationContext",
    "PyGenerationMetadata",
    "PyGenerationRequest",
    "PyGenerationResponse",
    "PyModalConfig",
    "PyProvenance",
    "PyValidationResult",
    "ServiceError",
    "__version__",
    "parse_calls",
    "tool_constraint",
]
