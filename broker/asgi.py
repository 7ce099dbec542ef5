"""ASGI entry point: HTTP through Django, `/ws/fills/` through Channels, and the server's lifespan."""

import asyncio
import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import FileResponse, HttpRequest, HttpResponseBase


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain and the view run in one worker thread.

    With an async-capable chain Django runs each hook of every sync-only middleware (sessions, CSRF,
    auth, messages...) through its own `sync_to_async`: 17 thread hops per API request, about 3 ms of
    CPU, more than the order entry view itself. Every view here is synchronous, so the whole chain runs
    synchronously in one hop instead; the response (streamed CSV included) is still sent by the event
    loop. Each request keeps its own thread (Django's ThreadSensitiveContext per request), so its
    database connection is the one the view used.
    """

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware(is_async=False)

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]  # as ASGIHandler does
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does before making its handler
django_asgi_app = OneHopASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)
from django.urls import path  # noqa: E402

from broker.ws_auth import TokenOrSessionAuthMiddleware  # noqa: E402
from orders import streaming  # noqa: E402
from orders.consumers import FillsConsumer  # noqa: E402


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """At startup, warm the process up (broker/warmup.py). At shutdown (after the server closed every
    connection), send what this process's fill stream publisher still holds: uvicorn ends its worker by
    re-raising SIGTERM, so atexit would not run."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            from broker.warmup import warm_up

            await asyncio.to_thread(warm_up)  # before the server accepts its first connection
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.to_thread(streaming.flush, streaming.EXIT_FLUSH_SECONDS)
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": TokenOrSessionAuthMiddleware(URLRouter([path("ws/fills/", FillsConsumer.as_asgi())])),
        "lifespan": lifespan,
    }
)
