"""Order entry's ticker lookup: the ORM's row, read with a statement written once per process."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from broker.exceptions import ApplicationError
from broker.models import Ticker
from broker.selectors import ticker_by_symbol
from orders.validation import entry_ticker
from tests.conftest import Market

pytestmark = pytest.mark.django_db


def test_the_ticker_is_the_orms_field_by_field(market: Market, django_assert_num_queries: Any) -> None:
    # given a ticker with its market-data fields set
    Ticker.objects.filter(symbol="COIN").update(quote_fetched_at=timezone.now(), stale=True, volume=12_345)

    # when order entry looks it up
    with django_assert_num_queries(1):
        ticker = entry_ticker(symbol="COIN")

    # then it is the row the ORM reads, every field with the same value and type
    expected = ticker_by_symbol(symbol="COIN")
    for field in Ticker._meta.concrete_fields:
        ours, theirs = getattr(ticker, field.attname), getattr(expected, field.attname)
        assert ours == theirs, field.name
        assert type(ours) is type(theirs), field.name
    assert not ticker._state.adding
    assert ticker._state.db == expected._state.db


@pytest.mark.parametrize("symbol", ["NOPE", "coin"])
def test_an_unknown_ticker_names_the_field(market: Market, symbol: str) -> None:
    with pytest.raises(ApplicationError) as error:
        entry_ticker(symbol=symbol)
    assert error.value.errors == {"ticker": [f"Unknown ticker {symbol!r}."]}


def test_an_inactive_ticker_is_unknown(market: Market) -> None:
    Ticker.objects.filter(symbol="COIN").update(active=False)

    with pytest.raises(ApplicationError) as error:
        entry_ticker(symbol="COIN")
    assert error.value.errors == {"ticker": ["Unknown ticker 'COIN'."]}
