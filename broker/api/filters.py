"""Filters shared by the list endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC here.

    Python accepts UTC offsets up to a day and Postgres only up to about 16 hours, and a time near
    year 1 or 9999 can leave the calendar once shifted: both would fail inside the query as a 500.
    Converting first keeps every answer a 400 that names the parameter.
    """

    default_error_messages = {"range": "Out of range once converted to UTC; use a time between years 1 and 9999."}

    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError as error:
            raise ValidationError(self.error_messages["range"], code="range") from error


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
