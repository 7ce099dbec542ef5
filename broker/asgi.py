"""ASGI entry point: HTTP through Django, `/ws/fills/` through Channels, and the server's lifespan."""

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

logger = logging.getLogger(__name__)


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain and the view run in one worker thread.

    With an async-capable chain Django runs each hook of every sync-only middleware (sessions, CSRF,
    auth, messages...) through its own `sync_to_async`: 17 thread hops per API request, about 3 ms of
    CPU, more than the order entry view itself. Every view here is synchronous, so the whole chain runs
    synchronously in one hop instead; the response (streamed CSV included) is still sent by the event
    loop. Each request keeps one thread for all its synchronous parts (a ThreadSensitiveContext per
    request, as Django does), so its database connection is the one the view used.

    Django's own context starts a new thread for every request and a second one to join it, and
    everything a library keeps per thread starts over with it: Celery's Redis result backend alone
    (thread-local, since it is not thread-safe) cost 1.5 ms of CPU per order entered. So the
    single-thread executors are kept and handed to the next request instead, as a threaded WSGI server
    keeps its threads; Django is built for state carried over between requests on one thread.
    """

    # Idle executors kept for reuse; more than this many requests at once get executors that are
    # shut down after their request.
    KEEP_EXECUTORS = 32

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware(is_async=False)
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # A view still running for a client that went away only delays the executor's next
            # request behind it: its one thread runs one call at a time.
            if len(self._idle) < self.KEEP_EXECUTORS:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)

    # Executors warmed at startup. One was not enough: two requests at once (a monitor's health check
    # and the first order) made a second executor, whose thread had nothing ready, and being the last
    # one handed back it was the next one taken, by the first order.
    WARM_EXECUTORS = 4

    async def warm_up(self) -> None:
        """Warm the process up (broker/warmup.py) in the executors the first requests will get, so what
        is kept per thread (the result backend, the caches) is ready in their threads."""
        from broker import warmup
        from broker.warmup import warm_up
        from orders.rehearsal import Part

        warmup.REHEARSAL = Part.PLACE  # a web process is the gateway
        loop = asyncio.get_running_loop()
        for _ in range(self.WARM_EXECUTORS):
            executor = ThreadPoolExecutor(1, thread_name_prefix="request")
            await loop.run_in_executor(executor, warm_up)  # the process's part runs once, the thread's each time
            self._idle.append(executor)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `ASGIHandler.handle` in one thread hop instead of three.

        Django sends `request_started` (its receivers are synchronous: a hop), runs the chain (a hop),
        and after sending closes the response (`request_finished`, synchronous again: a hop), beside a
        task listening for the client going away, which can only stop waiting for a synchronous view,
        not stop it. Here the signal, the chain and, for a response already rendered, its close run in
        one call on the request's thread; only a streamed response (a CSV export reading rows as it
        goes) is closed after it has been sent, as Django does. A client gone before the answer is
        sent costs nothing: the server drops what is sent to a closed connection.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            await self.send_response(response, send)
            if response.streaming:
                await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = error_response if request is None else self.get_response(request)
        assert response is not None  # create_request returns a request or the response refusing it
        response._handler_class = self.__class__  # type: ignore[attr-defined]  # as ASGIHandler does
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            response.close()  # its content is bytes already: `request_finished` now, in this hop
        return response


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does before making its handler
django_asgi_app = OneHopASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)
from django.urls import path  # noqa: E402

from broker.ws_auth import TokenOrSessionAuthMiddleware  # noqa: E402
from orders.consumers import FillsConsumer  # noqa: E402


async def listen_always() -> str | None:
    """Subscribe this process to a channel of its own that nothing sends to, for as long as it runs; its
    name. channels-redis's pub/sub layer reads a connection only while it has a subscription: with
    none, its reader sleeps 100 ms at a time, so the first subscriber of a process (a fill stream
    opened after a start, or after every other one closed) got its first messages up to 100 ms late,
    whatever the load. With this one it always reads, and a message comes in as it arrives."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return None
    try:
        return str(await layer.new_channel(prefix="broker.process."))
    except Exception:  # Redis down at start: the first fill stream subscribes as it would have anyway
        logger.warning("could not subscribe to the channel layer at start", exc_info=True)
        return None


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """At startup, warm the process up (broker/warmup.py) before the server accepts a connection."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await django_asgi_app.warm_up()  # before the server accepts its first connection
            await listen_always()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": TokenOrSessionAuthMiddleware(URLRouter([path("ws/fills/", FillsConsumer.as_asgi())])),
        "lifespan": lifespan,
    }
)
