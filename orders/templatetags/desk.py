"""Small template helpers for the staff screens."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from orders.api.serializers import format_price

register = template.Library()


@register.filter
def get(mapping: Any, key: str) -> Any:
    """`row.fields|get:column`: a dict value by a key held in a variable ('' when missing)."""
    if isinstance(mapping, dict):
        return mapping.get(key, "")
    return ""


@register.filter
def shares(value: int | None) -> str:
    """A share count with thousands separators: 8,614."""
    return "" if value is None else f"{value:,}"


@register.filter
def price(value: Decimal | None) -> str:
    """A price as the API shows it: cents ("161.90"), or up to four places for a dark midpoint."""
    return format_price(value) or ""
