"""Request bodies are bounded before they are read: the API's JSON and the bulk CSV upload."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django_htmx.middleware import HtmxDetails

from broker.api.parsers import DecimalJSONParser, RequestTooLarge
from orders import roles, views
from orders.bulk import BULK_MAX_BYTES
from orders.models import BulkBatch, Order
from tests.conftest import Market
from tests.staff import staff_user

pytestmark = pytest.mark.django_db

ORDER = {
    "customerId": "000002",
    "direction": "Buy",
    "ticker": "COIN",
    "type": "Limit",
    "quantity": 10,
    "price": "250.00",
}


def padded(size: int) -> bytes:
    """A valid order request of exactly `size` bytes (JSON allows any amount of whitespace)."""
    body = json.dumps(ORDER).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_an_api_body_over_the_limit_is_413_naming_the_limit_and_places_nothing(market: Market) -> None:
    # given a staff user who may enter orders, and a valid order padded one byte past the limit
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(staff_user("boss", roles.ADMIN))
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = padded(limit + 1)
    assert len(body) == limit + 1

    # when it is posted
    response = client.post("/api/orders", data=body, content_type="application/json")

    # then it is refused unread with 413 naming the limit, and no order is placed
    assert response.status_code == 413, response.content[:300]
    assert f"{limit:,} bytes" in response.json()["detail"]
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert not Order.objects.exists()

    # and the same order at exactly the limit is placed
    assert client.post("/api/orders", data=padded(limit), content_type="application/json").status_code == 201


def test_a_body_without_content_length_is_read_only_up_to_the_limit() -> None:
    # given a chunked request (no Content-Length) whose body is one byte over the limit
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    stream = io.BytesIO(padded(limit + 1))
    request = RequestFactory().post("/api/orders", data=b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)

    # when the API's parser reads it, then it refuses after limit + 1 bytes, not at the end of the body
    with pytest.raises(RequestTooLarge, match="DATA_UPLOAD_MAX_MEMORY_SIZE"):
        DecimalJSONParser().parse(stream, "application/json", {"request": request})
    assert stream.tell() == limit + 1


def test_a_too_large_bulk_file_is_refused_without_being_read_into_memory(market: Market) -> None:
    # given a CSV one line past the bulk limit, already encoded in a request (as a server would have it)
    header = b"customerId,direction,ticker,type,quantity\n"
    line = b"000002,Buy,COIN,Market,1\n"
    content = header + line * ((BULK_MAX_BYTES - len(header)) // len(line) + 1)
    assert len(content) > BULK_MAX_BYTES
    request = RequestFactory().post("/orders/bulk/", {"file": SimpleUploadedFile("big.csv", content)})
    del content
    request.user = staff_user("boss", roles.ADMIN)
    request.htmx = HtmxDetails(request)  # type: ignore[attr-defined]

    # when the bulk screen handles it, memory traced from the first byte it reads
    tracemalloc.start()
    try:
        response = views.bulk_upload(request)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # then the file is refused naming the limit, no batch is made, and it was never held in memory
    assert response.status_code == 200
    assert "larger than 5 MB" in response.content.decode()
    assert "FILE_UPLOAD_MAX_BYTES" in response.content.decode()
    assert not BulkBatch.objects.exists()
    assert peak < BULK_MAX_BYTES // 2, peak
