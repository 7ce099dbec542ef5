"""The process layout of `make run` and the bench (broker/processes.py): every queue has exactly one
worker pool, and the sizes come from the environment."""

from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings

from broker import processes


def test_every_queue_is_consumed_by_exactly_one_worker_pool() -> None:
    # given the worker pools
    consumed = Counter(queue for pool in processes.WORKER_POOLS for queue in pool.queues)

    # then each queue the tasks are routed to has one pool, and no pool consumes a queue nobody sends to
    assert set(consumed) == set(settings.BROKER_QUEUES)
    assert max(consumed.values()) == 1
    # and the order flow has a pool of its own
    assert next(pool for pool in processes.WORKER_POOLS if "lit" in pool.queues).queues == ("orders", "lit", "dark")


def test_pool_commands_take_their_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a larger order-flow pool and three web workers asked for in the environment
    monkeypatch.setenv("CELERY_ORDERS_CONCURRENCY", "3")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")

    # when the commands are built
    commands = processes.worker_pool_commands(node_prefix="run-", host="box")
    web = processes.web_command(host="127.0.0.1", port=8000)

    # then there is one worker per pool, named after it, with its queues, size and prefetch
    assert list(commands) == [f"worker-{pool.name}" for pool in processes.WORKER_POOLS]
    orders = commands["worker-orders"]
    assert orders[orders.index("-Q") + 1] == "orders,lit,dark"
    assert orders[orders.index("-c") + 1] == "3"
    assert orders[orders.index("-n") + 1] == "run-orders@box"
    assert orders[orders.index("--prefetch-multiplier") + 1] == "1"
    # and the web tier is gunicorn with three uvicorn workers on one port
    assert web[web.index("--workers") + 1] == "3"
    assert web[web.index("--worker-class") + 1] == "broker.processes.WebWorker"
    assert web[web.index("--bind") + 1] == "127.0.0.1:8000"
