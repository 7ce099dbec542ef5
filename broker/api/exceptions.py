"""One exception handler: every error is JSON naming what was wrong, never an HTML page or a 500 for bad input."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from broker.api.parsers import request_too_large
from broker.exceptions import ApplicationError
from broker.transactions import OVERLOADED_MESSAGE, Overloaded, is_overloaded


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_overloaded(exc):
        exc = Overloaded(OVERLOADED_MESSAGE)
    if isinstance(exc, ApplicationError):
        body: dict[str, Any] = dict(exc.errors) if exc.errors else {"detail": exc.message}
        retry_after = getattr(exc, "retry_after", None)  # broker.transactions.Busy (503)
        return Response(
            body, status=exc.status_code, headers={"Retry-After": str(retry_after)} if retry_after else None
        )
    if isinstance(exc, RequestDataTooBig):
        # Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE before reading it (Content-Length) or
        # after limit + 1 bytes (chunked); for the API that is a JSON 413 naming the limit, not the
        # HTML 400 page Django would answer for this SuspiciousOperation.
        too_large = request_too_large()
        return Response({"detail": str(too_large.detail)}, status=too_large.status_code)
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, exceptions.ParseError):
        return Response({"body": [str(exc.detail)]}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response({"body": [str(exc.detail)]}, status=exc.status_code)
    if isinstance(exc, Http404):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return drf_exception_handler(exc, context)
