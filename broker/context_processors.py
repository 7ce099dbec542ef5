"""Template context every staff screen gets."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from broker import roles


def dead_letters(request: HttpRequest) -> dict[str, Any]:
    """How many dead letters are open, for the menu's badge; only for staff who handle them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    if not user.has_perm(roles.HANDLE_DEAD_LETTERS):
        return {}
    from broker.deadletters import open_count

    return {"dead_letters_open": open_count()}
