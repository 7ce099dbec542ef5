"""The one error type services raise; `broker.api.exceptions.exception_handler` maps it to JSON."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request the service refuses. `errors` maps API field names to messages."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors if errors is not None else ({field: [message]} if field else {})


class ValidationFailed(ApplicationError):
    """Malformed input: 400 with every bad field named."""

    def __init__(self, errors: dict[str, list[str]]):
        first = next(iter(errors.items()))
        super().__init__(f"{first[0]}: {first[1][0]}", errors=errors)


class Conflict(ApplicationError):
    status_code = 409


class Forbidden(ApplicationError):
    status_code = 403


class NotFound(ApplicationError):
    status_code = 404
