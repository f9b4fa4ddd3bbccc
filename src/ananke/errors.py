"""The exception hierarchy.

Every error is an `AnankeError`, itself a `RuntimeError`, so code written against the original
API (`except RuntimeError`) keeps working; `GenerationTimeout` is also a `TimeoutError`.
"""

from __future__ import annotations


class AnankeError(RuntimeError):
    """Base class of every error raised by Ananke."""


class ConfigurationError(AnankeError):
    """A bad endpoint, timeout, cache size, environment variable or other setting."""


class InvalidRequestError(AnankeError, ValueError):
    """A request or constraint object built with bad values (empty prompt, max_tokens <= 0, …)."""


class ConstraintCompileError(AnankeError):
    """A constraint could not be compiled into a grammar.

    `constraint` names the offending constraint (None when the list as a whole is at fault).
    """

    def __init__(self, message: str, constraint: str | None = None) -> None:
        self.constraint = constraint
        self.reason = message
        super().__init__(f"constraint {constraint!r}: {message}" if constraint else message)


class AuthenticationError(AnankeError):
    """The service refused the API key (HTTP 401/403)."""


class ServiceError(AnankeError):
    """The remote service answered with an error (a 4xx/5xx other than authentication)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class BackendError(AnankeError):
    """The generation backend failed: model loading, inference, or an unreachable service."""


class GenerationTimeout(AnankeError, TimeoutError):
    """The request took longer than its `timeout_secs`."""
