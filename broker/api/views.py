from __future__ import annotations

import sys

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.celery import app as celery_app
from broker.transactions import OVERLOADED_MESSAGE, Overloaded, is_overloaded


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _broker_ok() -> bool:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


# The same body with 200 (all ok) or 503 (the database or the Celery broker unavailable).
HEALTH = inline_serializer(
    "Health",
    {"status": serializers.CharField(), "database": serializers.CharField(), "broker": serializers.CharField()},
)


class HealthView(APIView):
    """Liveness of the web process and its two dependencies. No token needed."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(responses={200: HEALTH, 503: HEALTH})
    def get(self, request: Request) -> Response:
        database, broker = _database_ok(), _broker_ok()
        body = {
            "status": "ok" if database and broker else "unavailable",
            "database": "ok" if database else "unavailable",
            "broker": "ok" if broker else "unavailable",
        }
        return Response(body, status=200 if database and broker else 503)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """API clients get JSON for an unknown URL; browsers get Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"No endpoint {request.path}. See /api/docs/."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    # Called while the uncaught exception is being handled. A request that waited for a database
    # connection past the pool's timeout (outside a DRF view: a screen, the session middleware) is a
    # saturated server, not a bug: 503 with Retry-After, as the API answers it.
    if is_overloaded(sys.exc_info()[1]):
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse({"detail": OVERLOADED_MESSAGE}, status=503)
        else:
            response = HttpResponse(OVERLOADED_MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(Overloaded.retry_after)
        return response
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal error; it has been logged."}, status=500)
    return defaults.server_error(request)
