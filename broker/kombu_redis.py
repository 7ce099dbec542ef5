"""kombu's Redis transport, keeping one redis-py client per channel instead of making one per call.

kombu makes a new `redis.Redis` for each of its synchronous operations: publishing a task, and, with
late acknowledgement, two more for every task a worker runs (noting the message as unacknowledged when
it arrives, and forgetting it at the ack). Each new client copies redis-py's table of response
callbacks (some 250 entries): kombu's unacked bookkeeping was 7% of the order workers' CPU at 100
orders/s, mostly building clients. A redis-py client holds no connection of its own (each command
takes one from the pool and gives it back), so one client per channel and pool serves every call; the
pool resets itself in a forked child, and a channel that drops its pool gets a new client with the new
pool. Only the synchronous client changes; the asynchronous one (the worker's BRPOP, its pub/sub) is
kombu's own, already kept.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _kept_client: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        # kombu's own method (private, so not in its stubs) makes the client.
        create = kombu_redis.Channel._create_client  # type: ignore[attr-defined]
        if asynchronous:
            return create(self, asynchronous=True)
        pool = self.pool
        kept = self._kept_client
        if kept is None or kept[0] is not pool:
            kept = self._kept_client = (pool, create(self, asynchronous=False))
        return kept[1]


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make the `redis` and `rediss` transports (and `redis+socket://` URLs) this one, for every kombu
    connection this process makes afterwards. Must run before the first connection is made: kombu keeps
    the class a name resolved to."""
    from kombu import transport

    for name in ("redis", "rediss"):
        transport.TRANSPORT_ALIASES[name] = f"{__name__}:Transport"
        getattr(transport, "_transport_cache").pop(name, None)  # noqa: B009  (private: not in the stubs)
