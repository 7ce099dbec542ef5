"""ASGI entry point: HTTP through Django, `/ws/fills/` through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)
from django.urls import path  # noqa: E402

from broker.ws_auth import TokenOrSessionAuthMiddleware  # noqa: E402
from orders.consumers import FillsConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": TokenOrSessionAuthMiddleware(URLRouter([path("ws/fills/", FillsConsumer.as_asgi())])),
    }
)
