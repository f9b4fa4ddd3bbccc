"""Constraint compilation, caching and independent validation."""

from ananke.constraints.cache import CompileCache
from ananke.constraints.compiler import (
    CompiledConstraints,
    CompileLimits,
    compile_constraints,
    constraints_hash,
)
from ananke.constraints.validate import validate

__all__ = [
    "CompileCache",
    "CompileLimits",
    "CompiledConstraints",
    "compile_constraints",
    "constraints_hash",
    "validate",
]
