"""DRF's side of `broker.access`."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from broker import access


class Requires(permissions.BasePermission):
    """The view's `required_permission` (`broker.roles`), checked by `broker.access` before the body is
    read or a row is looked up; a refusal is its 403 naming the permission. Clients pass where the
    permission is one of theirs; the view then narrows them to their own customer."""

    def has_permission(self, request: Request, view: Any) -> bool:
        access.permission_require(user=request.user, permission=view.required_permission)
        return True


AUTHENTICATED_WITH_PERMISSION = [permissions.IsAuthenticated, Requires]
