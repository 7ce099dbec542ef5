"""JSON parsing that never turns a price into a float, and never reads more than the body limit."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

from broker.exceptions import ValidationFailed
from broker.text import surrogate_path


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


def body_limit() -> int | None:
    """Django's own limit on a request body held in memory; DRF's parsers read the stream and skip it."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def request_too_large() -> RequestTooLarge:
    return _too_large(body_limit() or 0)


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than {limit:,} bytes, the limit (DATA_UPLOAD_MAX_MEMORY_SIZE).")


class DecimalJSONParser(JSONParser):
    """Numbers with a fraction become `Decimal`, so 161.9 stays exactly 161.9 end to end.

    The body is bounded before it is read: a Content-Length over the limit is refused unread (413), and
    at most limit + 1 bytes are ever read, so a body without a Content-Length (chunked) or with a false
    one cannot grow past it either. A string holding an unpaired surrogate ("\\ud800", valid JSON but not
    text) is refused here for every endpoint, naming the top-level field it is in.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        context = parser_context or {}
        encoding = context.get("encoding", "utf-8")
        limit = body_limit()
        if limit is not None:
            request = context.get("request")
            meta = getattr(request, "META", {})
            try:
                declared = int(meta.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise _too_large(limit)
            raw = stream.read(limit + 1)
            if len(raw) > limit:
                raise _too_large(limit)
        else:
            raw = stream.read()
        try:
            data = json.loads(raw.decode(encoding), parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as error:
            raise ParseError(f"Body is not valid JSON: {error}") from error
        where = surrogate_path(data)
        if where is not None:
            field = where.split(".", 1)[0]
            raise ValidationFailed({field: ["Contains an unpaired surrogate (e.g. \\ud800), which is not text."]})
        return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
