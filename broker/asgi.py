"""ASGI entry point: HTTP through Django, `/ws/fills/` through Channels, and the server's lifespan."""

import asyncio
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
django_asgi_app = get_asgi_application()

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
