"""WebSocket authentication: `?token=<API token>` for API clients, the session cookie for browsers.

Token clients need not send an Origin header (they are not browsers); session connections are
origin-checked against ALLOWED_HOSTS, since a cookie would otherwise ride along from any site.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser

# DRF's keys are 40 hex digits; anything else (a NUL, say, which Postgres cannot even compare) is no token.
TOKEN_KEY = re.compile(r"[0-9a-f]{40}")


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    if not TOKEN_KEY.fullmatch(key):
        return AnonymousUser()
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenOrSessionAuthMiddleware:
    def __init__(self, inner: Any) -> None:
        self.token_app = inner
        self.session_app = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode())
        if "token" in query:
            scope = dict(scope, user=await _user_for_token(query["token"][0]))
            return await self.token_app(scope, receive, send)
        return await self.session_app(scope, receive, send)
