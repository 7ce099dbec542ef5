"""Monthly statements: two months of one customer's history (last month's rows moved back in time by
one shift, so their order is kept), and the statement's figures checked against the activities, the
books and figures computed here by hand; the PDF's text read back; who may read one; bad months."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from pypdf import PdfReader

from broker.models import Customer, PriceBar, Ticker
from orders import selectors, services
from orders.activities import MARKET_TZ
from orders.models import Trade
from settlement.models import CASH_ASSET
from settlement.selectors import holdings
from settlement.services import Movement, movement_post
from tests.conftest import Market, client_for, drive, place, staff_client

pytestmark = pytest.mark.django_db
CENT = Decimal("0.01")


@pytest.fixture(autouse=True)
def _no_horizon(settings: Any) -> None:
    settings.ACTIVITY_HORIZON_SECONDS = 0


def this_month() -> date:
    return timezone.localtime(timezone.now(), MARKET_TZ).date().replace(day=1)


def last_month() -> date:
    return (this_month() - timedelta(days=1)).replace(day=1)


def label(month: date) -> str:
    return f"{month:%Y-%m}"


def move_everything_back_to(target: datetime) -> None:
    """Every timestamp the books keep, moved back by the same interval so that the latest is `target`.

    The ledger refuses updates (a trigger): this test's own transaction, rolled back at its end, sets the
    triggers aside once what COMMIT would check (the postings' deferred balance checks) has been checked.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "SELECT max(t) FROM (SELECT max(created_at) AS t FROM settlement_ledgerentry"
            " UNION ALL SELECT max(trade_date) FROM orders_trade"
            " UNION ALL SELECT max(changed_at) FROM orders_tradeversion) x"
        )
        (latest,) = cursor.fetchone()
        shift = latest - target
        for table, column in (
            ("orders_trade", "trade_date"),
            ("orders_trade", "settlement_date"),
            ("orders_tradeversion", "changed_at"),
            ("orders_order", "created_at"),
            ("settlement_posting", "created_at"),
            ("settlement_ledgerentry", "created_at"),
        ):
            cursor.execute(f"UPDATE {table} SET {column} = {column} - %s WHERE {column} IS NOT NULL", [shift])
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def bar(day: date, close: str) -> None:
    price = Decimal(close)
    PriceBar.objects.create(
        ticker=Ticker.objects.get(symbol="COIN"),
        date=day,
        open=price,
        high=price,
        low=price,
        close=price,
        adj_close=price,
        volume=1,
        source="test",
    )


def statement(month: date, customer_id: str = "000002") -> dict[str, Any]:
    response = staff_client().get(f"/api/customers/{customer_id}/statements", {"month": label(month)})
    assert response.status_code == 200, response.content
    return dict(response.json())


def fills(customer_id: str = "000002") -> list[Trade]:
    return list(Trade.objects.filter(customer__customer_id=customer_id).order_by("pk"))


@pytest.fixture
def two_months(market: Market) -> dict[str, Any]:
    """Last month: funding, COIN transferred in, two buys and a sell, all settled, a deposit. This month:
    a correction of last month's first buy, a buy, a sell, a bust of that sell, a withdrawal, journals;
    some unsettled."""
    customer = Customer.objects.get(customer_id="000002")
    drive(place(direction="Buy", type="Limit", quantity=100, price="260.00", timeInForce="IOC"))
    drive(place(direction="Buy", type="Limit", quantity=50, price="260.00", timeInForce="IOC"))
    drive(place(direction="Sell", type="Limit", quantity=120, price="250.00", timeInForce="IOC"))
    services.trades_settle(trade_ids=[trade.pk for trade in fills()])
    movement_post(Movement("CashDeposit", customer.pk, CASH_ASSET, Decimal("1000.00"), "wire", "ops"))
    earlier = fills()
    assert len(earlier) >= 3, "the orders did not trade"
    # last month's rows at noon on its 15th (New York)
    move_everything_back_to(datetime.combine(last_month().replace(day=15), time(12), tzinfo=MARKET_TZ))
    bar(last_month().replace(day=20), "240.00")
    bar(this_month(), "270.00")

    services.trade_correct(trade_id=earlier[0].pk, price=Decimal("255.00"), reason="price fix", actor="ops")
    drive(place(direction="Buy", type="Limit", quantity=30, price="260.00", timeInForce="IOC"))
    drive(place(direction="Sell", type="Limit", quantity=10, price="250.00", timeInForce="IOC"))
    now_fills = [trade for trade in fills() if trade.pk not in {t.pk for t in earlier}]
    services.trade_correct(trade_id=now_fills[-1].pk, bust=True, reason="erroneous", actor="ops")
    movement_post(Movement("CashWithdrawal", customer.pk, CASH_ASSET, Decimal("300.00"), "payout", "ops"))
    other = Customer.objects.get(customer_id="000003").pk
    movement_post(Movement("Journal", customer.pk, CASH_ASSET, Decimal("50.00"), "gift", "ops", other))
    movement_post(Movement("Journal", other, "COIN", Decimal(7), "shares back", "ops", customer.pk))
    return {"customer": customer, "earlier": earlier}


def signed_shares(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    moved: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row["quantity"] is not None:
            moved[row["symbol"]] += Decimal(row["quantity"])
    return moved


def test_each_month_adds_up_from_its_opening_to_its_closing(two_months: dict[str, Any]) -> None:
    before, now = statement(last_month()), statement(this_month())

    # a finished month is final, the current one provisional
    assert (before["final"], now["final"]) == (True, False)
    # last month began with nothing: everything was funded and traded within it
    assert (before["openingCash"], before["openingPositions"]) == ("0.00", [])
    # one month closes where the next opens (a correction made later does not rewrite a closed month)
    assert now["openingCash"] == before["closingCash"]
    assert now["openingPositions"] == before["positions"]
    assert now["openingValue"] == before["closingValue"]
    for month in (before, now):
        # the month's activities carry its opening cash to its closing cash, and its shares
        rows = month["activities"]
        assert rows, month["month"]
        assert Decimal(month["openingCash"]) + sum(Decimal(row["netAmount"]) for row in rows) == Decimal(
            month["closingCash"]
        )
        opening = {row["symbol"]: Decimal(row["quantity"]) for row in month["openingPositions"]}
        closing = {row["symbol"]: Decimal(row["quantity"]) for row in month["positions"]}
        for symbol, moved in signed_shares(rows).items():
            assert opening.get(symbol, 0) + moved == closing.get(symbol, 0), symbol
        assert month["tradeCount"] == sum(1 for row in rows if row["type"] == "FILL")
    # the current month closes at the customer's cash now, settled or not
    summary = selectors.customer_summary(customer=two_months["customer"])
    assert Decimal(now["closingCash"]) == summary.settled_cash + summary.unsettled_cash
    # each month holds its own movements only
    assert {row["type"] for row in before["activities"]} >= {"CSD", "TRANSFER_IN", "FILL", "FEE", "SETTLEMENT"}
    assert {row["type"] for row in now["activities"]} >= {"CORRECTION", "BUST", "CSW", "JNLC", "JNLS", "FILL"}
    assert "CORRECTION" not in {row["type"] for row in before["activities"]}


def test_positions_are_valued_at_the_month_end_close(two_months: dict[str, Any]) -> None:
    before, now = statement(last_month()), statement(this_month())

    (coin,) = before["positions"]
    assert (coin["symbol"], coin["close"], coin["closeDate"]) == ("COIN", "240.00", f"{last_month():%Y-%m}-20")
    assert Decimal(coin["marketValue"]) == coin["quantity"] * Decimal("240.00")
    assert Decimal(before["closingValue"]) == Decimal(before["closingCash"]) + Decimal(coin["marketValue"])
    (coin_now,) = now["positions"]
    assert (coin_now["close"], coin_now["closeDate"]) == ("270.00", f"{this_month():%Y-%m-%d}")
    held = holdings(customer_id=two_months["customer"].pk)["COIN"].quantity
    unsettled = sum(
        (t.quantity if t.direction == "Buy" else -t.quantity)
        for t in fills()
        if t.settlement_date is None and not t.busted
    )
    assert coin_now["quantity"] == held + unsettled


def test_fees_and_realized_pnl_match_the_trades(two_months: dict[str, Any]) -> None:
    before, now = statement(last_month()), statement(this_month())

    # the fees of both months are the fees of the trades as they stand now
    standing = sum((t.fee for t in fills() if not t.busted), start=Decimal(0))
    assert Decimal(before["fees"]) + Decimal(now["fees"]) == standing
    assert Decimal(before["fees"]) == -sum(Decimal(r["netAmount"]) for r in before["activities"] if r["type"] == "FEE")
    # last month's realized P&L by hand: 5,000 COIN in at 250.00, the buys at their price, the sell
    # against the average cost (as last month saw it: before this month's correction)
    earlier = two_months["earlier"]
    held, cost, realized = Decimal(5000), Decimal(5000) * Decimal("250.00"), Decimal(0)
    for trade in sorted(earlier, key=lambda t: t.pk):
        version = trade.versions.order_by("version").first()
        price = version.price if version is not None else trade.price
        quantity = version.quantity if version is not None else trade.quantity
        notional = (quantity * price).quantize(CENT, rounding=ROUND_HALF_UP)
        if trade.direction == "Buy":
            held, cost = held + quantity, cost + notional
        else:
            average = cost / held
            realized += notional - average * quantity
            held, cost = held - quantity, cost - average * quantity
    assert Decimal(before["realizedPnl"]) == realized.quantize(CENT, rounding=ROUND_HALF_UP)
    assert realized != 0
    assert before["realized"] == [{"symbol": "COIN", "realizedPnl": before["realizedPnl"]}]


def test_once_everything_settles_the_realized_pnl_is_the_ledgers(market: Market) -> None:
    # given buys and sells within this month, all settled, nothing corrected
    drive(place(direction="Buy", type="Limit", quantity=100, price="260.00", timeInForce="IOC"))
    drive(place(direction="Sell", type="Limit", quantity=300, price="250.00", timeInForce="IOC"))
    drive(place(direction="Buy", type="Limit", quantity=40, price="260.00", timeInForce="IOC"))
    services.trades_settle(trade_ids=[trade.pk for trade in fills()])

    body = statement(this_month())

    ledger = holdings(customer_id=Customer.objects.get(customer_id="000002").pk)["COIN"].realized_pnl
    assert Decimal(body["realizedPnl"]) == ledger
    assert ledger != 0


def test_the_pdf_carries_the_figures(two_months: dict[str, Any]) -> None:
    body = statement(last_month())
    response = staff_client().get(
        "/api/customers/000002/statements", {"month": label(last_month())}, HTTP_ACCEPT="application/pdf"
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="statement-000002-{label(last_month())}.pdf"' in response["Content-Disposition"]
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    figures = [
        f"Monthly statement {label(last_month())}", body["openingCash"], body["closingCash"], body["closingValue"],
        body["fees"], body["realizedPnl"], body["positions"][0]["marketValue"], "wire",
        *(row["netAmount"] for row in body["activities"]),
    ]  # fmt: skip
    for figure in figures:
        assert figure in text, figure


def test_a_client_reads_its_own_statements_only(two_months: dict[str, Any]) -> None:
    assert (
        client_for("000002").get("/api/customers/000002/statements", {"month": label(last_month())}).status_code == 200
    )
    other = client_for("000003").get(
        "/api/customers/000002/statements", {"month": label(last_month())}, HTTP_ACCEPT="application/pdf"
    )
    assert other.status_code == 403
    assert other["Content-Type"] == "application/json"
    assert staff_client().get("/api/customers/999999/statements", {"month": label(last_month())}).status_code == 404


@pytest.mark.parametrize(
    "month",
    [None, "", "2026-13", "2026-1", "1969-12", "26-11", "2026-11-01", "\uff19\uff19\uff19\uff19-01"],
)
def test_a_bad_month_is_a_400_naming_it(market: Market, month: str | None) -> None:
    params = {} if month is None else {"month": month}
    response = staff_client().get("/api/customers/000002/statements", params)
    assert response.status_code == 400, response.content
    assert "month" in response.json()


def test_a_month_that_has_not_begun_is_refused(market: Market) -> None:
    future = (this_month() + timedelta(days=32)).replace(day=1)
    response = staff_client().get("/api/customers/000002/statements", {"month": label(future)})
    assert response.status_code == 400
    assert "has not begun" in response.json()["month"][0]


def test_the_statements_screen_shows_the_month_or_says_what_is_wrong(two_months: dict[str, Any]) -> None:
    from django.test import Client

    from orders import roles
    from tests.staff import staff_user

    browser = Client()
    browser.force_login(staff_user("t3", roles.TRADER))
    body = statement(last_month())

    page = browser.get("/accounts/statements/", {"customer": "000002", "month": label(last_month())})
    assert page.status_code == 200
    html = page.content.decode()
    for figure in (body["openingCash"], body["closingCash"], body["fees"], body["realizedPnl"], "Final"):
        assert figure in html, figure
    # no month: the last finished one; a bad one: said, and the current month shown instead
    assert (
        f'value="{label(last_month())}" selected'
        in browser.get("/accounts/statements/?customer=000002").content.decode()
    )
    bad = browser.get("/accounts/statements/", {"customer": "000002", "month": "2026-13"}).content.decode()
    assert "Must be a month" in bad
    assert "Provisional" in bad


def test_a_name_with_markup_characters_is_printed_as_written(market: Market) -> None:
    # reportlab's paragraphs read markup: an unescaped "<" in a name would break the PDF
    Customer.objects.filter(customer_id="000002").update(name="Smith & <Sons>")
    response = staff_client().get(
        "/api/customers/000002/statements", {"month": label(this_month())}, HTTP_ACCEPT="application/pdf"
    )
    assert response.status_code == 200
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "Smith & <Sons>" in text
