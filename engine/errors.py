"""One error hierarchy for the whole engine.

Misuse (``ConfigError`` and its kin) is kept apart from runtime failure
(``ProviderError``, ``SpendCapReached``). Every error carries a message a user
can act on and, where it applies, the name of the offending field (``param``).
All of them pickle cleanly because they cross Ray process boundaries.
"""

from __future__ import annotations


class RehearsalError(Exception):
    """Base of every error the engine raises on purpose."""

    #: HTTP status the service maps this error to.
    status_code = 500
    #: Machine-readable error type for the ``{"error": {...}}`` body.
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.error_type

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, self.param, self.code))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[RehearsalError], message: str, param: str | None, code: str) -> RehearsalError:
    return cls(message, param=param, code=code)


class ConfigError(RehearsalError):
    """The caller asked for something invalid: a bad spec, setting or argument."""

    status_code = 400
    error_type = "invalid_request_error"


class LogSchemaError(ConfigError):
    """A log-store file is unreadable or does not match the log schema."""

    error_type = "log_schema_error"


class EmptyWindowError(ConfigError):
    """The requested window holds no rows after filters."""

    error_type = "empty_window"


class Unauthorized(RehearsalError):
    """The request carries no valid management key."""

    status_code = 401
    error_type = "authentication_error"


class Forbidden(RehearsalError):
    """The key is valid but may not do this (e.g. a project-scoped key creating projects)."""

    status_code = 403
    error_type = "permission_error"


class NotFound(RehearsalError):
    """The object does not exist (or is not visible to the caller)."""

    status_code = 404
    error_type = "not_found"


class Conflict(RehearsalError):
    """The request conflicts with the current state of an object."""

    status_code = 409
    error_type = "conflict"


class DamagedRecord(Conflict):
    """A stored object no longer validates (e.g. written by an older, laxer version); lists skip it."""

    error_type = "damaged_record"


class SpendCapReached(RehearsalError):
    """A call was refused because it would take spend past the run's cap."""

    status_code = 402
    error_type = "spend_cap_reached"


class ProviderError(RehearsalError):
    """A model provider failed in a way retries could not fix."""

    status_code = 502
    error_type = "provider_error"


class Unavailable(RehearsalError):
    """A service the request needs (e.g. the orchestrator) cannot be reached now; retry later."""

    status_code = 503
    error_type = "service_unavailable"


class SecretKeyError(ConfigError):
    """``REHEARSAL_SECRET_KEY`` (or the generated key file) is malformed or cannot decrypt a stored secret.

    The operator's setting is wrong, not the request: the CLI exits 2 naming the variable, the API answers 500.
    """

    status_code = 500
    error_type = "secret_key_error"
