"""The Celery broker's transport keeps one redis-py client per channel (broker/kombu_redis.py)."""

from __future__ import annotations

import uuid
from typing import Any

from broker import kombu_redis
from broker.celery import app


def test_the_broker_channel_is_ours_and_keeps_its_client() -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, kombu_redis.Channel)
        assert channel._create_client() is channel._create_client()


def test_a_message_goes_through_and_is_acknowledged_once() -> None:
    # late acknowledgement's bookkeeping (the unacked hash and its index) runs on the kept client
    name = f"broker-test-{uuid.uuid4().hex}"
    with app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        queue = connection.SimpleQueue(name)
        try:
            queue.put({"n": 1})
            message = queue.get(timeout=10)  # a guard, not a timing
            assert message.payload == {"n": 1}
            client = channel._create_client()
            assert client.hexists(channel.unacked_key, message.delivery_tag)
            message.ack()
            assert not client.hexists(channel.unacked_key, message.delivery_tag)
            assert client is channel._create_client()
        finally:
            queue.clear()
            queue.close()
