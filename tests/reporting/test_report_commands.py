"""The reports' entry points: the aggregate, rebuild and recover commands, the nightly task and its beat
schedule, the re-aggregation a trade correction sends, and the admin's re-run action.

The example is tests/reporting/test_aggregation.py's, moved next to today so that a rebuild up to today
stays short: customer 000002 holds 5,000 COIN (transferred in at 250.00) before DAY1;
COIN closes 240.00 on DAY0, 250.00 on DAY1 and 245.00 on DAY2 (yesterday).

  DAY1 10:00 New York  Buy  100 @ 248.00, fee 1.00
  DAY1 11:00           Sell  50 @ 251.50, fee 0.50
  DAY2 10:00           Buy   20 @ 246.25, fee 0.25

DAY1: 2 trades, buys 24,800.00, sells 12,575.00, trade P&L 275.00, cash F - 12,226.50.
DAY2: 1 trade, cash F - 17,151.75, 5,070 held. Without the sale: cash F - 29,726.25, 5,120 held.
"""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from broker.celery import app as celery_app
from broker.models import Customer
from orders import services
from orders.models import Trade
from reporting import aggregation, tasks
from reporting.models import CustomerDay, PositionSnapshot, TickerDay
from tests.conftest import Market, drive, place
from tests.reporting.test_aggregation import at, make_example
from tests.reporting.test_reconciliation import staff_user

pytestmark = pytest.mark.django_db

TODAY = aggregation.today()
DAY0, DAY1, DAY2 = TODAY - timedelta(days=7), TODAY - timedelta(days=5), TODAY - timedelta(days=1)
F = Decimal("5000000.00")
MODELS: tuple[type[Any], ...] = (CustomerDay, PositionSnapshot, TickerDay)


@pytest.fixture
def example(market: Market) -> Customer:
    # The hand-computed example, on days relative to today (the commands default to today).
    return make_example(market, (DAY0, DAY1, DAY2))


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _rows(model: Any, **filters: Any) -> list[dict[str, Any]]:
    """Every column but the id and when it was computed: what a recomputation must reproduce."""
    return [
        {key: value for key, value in model_to_dict(row).items() if key not in {"id", "updated"}}
        for row in model.objects.filter(**filters).order_by(*model._meta.ordering)  # the natural key, not new ids
    ]


def _all_rows() -> list[list[dict[str, Any]]]:
    return [_rows(model) for model in MODELS]


def _aggregate_each_day() -> list[date]:
    days = aggregation.days_to_report(DAY1, TODAY)
    for day in days:
        run("aggregate", "--date", day.isoformat())
    return days


# --- aggregate ---------------------------------------------------------------------------------------


def test_aggregate_writes_the_days_rows_and_running_it_twice_changes_nothing(example: Customer) -> None:
    # when DAY1 is aggregated from the command line
    out = run("aggregate", "--date", DAY1.isoformat())

    # then it says what it wrote: one row per customer, one ticker, a position per customer holding COIN
    customers = Customer.objects.count()
    assert out.strip() == (f"{DAY1} (final): {customers} customer days, 1 ticker days, {customers} position snapshots")
    day = CustomerDay.objects.get(customer=example, date=DAY1)
    assert (day.nr_trades, day.buy_notional, day.sell_notional, day.commission_paid) == (
        2,
        Decimal("24800.00"),
        Decimal("12575.00"),
        Decimal("1.50"),
    )
    assert (day.remaining_fund, day.trade_pnl, day.provisional) == (F - Decimal("12226.50"), Decimal("275.00"), False)
    assert TickerDay.objects.get(date=DAY1).volume == 150
    assert PositionSnapshot.objects.get(customer=example, date=DAY1).quantity == 5050
    before = _all_rows()

    # when it runs again, the rows are the same
    assert run("aggregate", "--date", DAY1.isoformat()) == out
    assert _all_rows() == before


def test_aggregate_defaults_to_today_which_is_provisional(example: Customer) -> None:
    out = run("aggregate")

    assert out.startswith(f"{TODAY} (provisional): ")
    assert set(CustomerDay.objects.values_list("date", "provisional")) == {(TODAY, True)}
    # today's row counts from the beginning: all three trades
    assert CustomerDay.objects.get(customer=example).total_nr_trades == 3


@pytest.mark.parametrize("bad", ["2024-13-01", "yesterday", "20240307"])
def test_a_bad_date_is_an_error_naming_it(bad: str) -> None:
    with pytest.raises(CommandError, match=f"--date '{bad}' is not a date"):
        run("aggregate", "--date", bad)
    with pytest.raises(CommandError, match=f"--since '{bad}' is not a date"):
        run("rebuild_reports", "--since", bad)
    assert not CustomerDay.objects.exists()


# --- rebuild_reports ---------------------------------------------------------------------------------


def test_rebuild_after_aggregate_leaves_identical_rows_and_shows_progress(example: Customer) -> None:
    # given every day from DAY1 to today aggregated one by one
    days = _aggregate_each_day()
    before = _all_rows()
    assert [row["date"] for row in _rows(CustomerDay, customer=example)] == days

    # when the reports are rebuilt from trades alone
    out = run("rebuild_reports")

    # then every row is back as it was (new rows: no id survives the deletion)
    assert _all_rows() == before
    lines = out.splitlines()
    assert lines[0].startswith(f"Deleted the rows from {DAY1}: ")
    # and a bar per day, filling up, ending full on today
    bars = [line for line in lines if line.startswith("[")]
    assert len(bars) == len(days)
    assert bars[0] == f"[{'#' * (30 // len(days))}{'.' * (30 - 30 // len(days))}] 1/{len(days)} {DAY1}"
    assert bars[-1] == f"[{'#' * 30}] {len(days)}/{len(days)} {days[-1]}"
    assert lines[-1] == f"Rebuilt {len(days)} days from {DAY1} to {days[-1]}."


def test_rebuild_recomputes_what_changed_in_the_trades(example: Customer) -> None:
    # given the days aggregated, then the sale busted behind the aggregation's back
    _aggregate_each_day()
    Trade.objects.filter(customer=example, direction="Sell", busted=False).update(busted=True)

    run("rebuild_reports")

    # then DAY1 and the days after it follow the trades
    day1 = CustomerDay.objects.get(customer=example, date=DAY1)
    assert (day1.nr_trades, day1.sell_notional) == (1, Decimal("0.00"))
    day2 = CustomerDay.objects.get(customer=example, date=DAY2)
    assert day2.remaining_fund == F - Decimal("29726.25")
    assert PositionSnapshot.objects.get(customer=example, date=DAY2).quantity == 5120


def test_rebuild_since_keeps_the_earlier_days(example: Customer) -> None:
    # given every day aggregated
    _aggregate_each_day()
    earlier = list(CustomerDay.objects.filter(date__lt=DAY2).order_by("pk").values())
    assert earlier
    later = _rows(CustomerDay, date__gte=DAY2)
    later_ids = set(CustomerDay.objects.filter(date__gte=DAY2).values_list("pk", flat=True))

    # when rebuilt since DAY2
    out = run("rebuild_reports", "--since", DAY2.isoformat())

    # then the days before it are untouched (the same ids), the rest recomputed as new rows
    assert list(CustomerDay.objects.filter(date__lt=DAY2).order_by("pk").values()) == earlier
    assert _rows(CustomerDay, date__gte=DAY2) == later
    assert not later_ids & set(CustomerDay.objects.values_list("pk", flat=True))
    assert out.splitlines()[0].startswith(f"Deleted the rows from {DAY2}: ")


def test_rebuild_with_no_trades_says_so(market: Market) -> None:
    assert run("rebuild_reports").strip() == "No trades: nothing to rebuild."
    assert not CustomerDay.objects.exists()


# --- recover_reports ---------------------------------------------------------------------------------


def test_recover_recomputes_the_last_days_only(example: Customer) -> None:
    # given every day aggregated, then the DAY2 buy busted behind the aggregation's back
    days = _aggregate_each_day()
    day1_before = _rows(CustomerDay, date=DAY1)
    Trade.objects.filter(customer=example, trade_date=at(DAY2, 10), busted=False).update(busted=True)

    # when the last two days (yesterday and today) are recovered
    out = run("recover_reports", "--days", "2")

    # then DAY2 no longer has the buy; DAY1, outside the window, is as it was
    day2 = CustomerDay.objects.get(customer=example, date=DAY2)
    assert (day2.nr_trades, day2.remaining_fund) == (0, F - Decimal("12226.50"))
    assert _rows(CustomerDay, date=DAY1) == day1_before
    recovered = [day for day in days if day >= DAY2]
    assert out.splitlines()[-1] == f"Recomputed {len(recovered)} days from {DAY2} to {recovered[-1]}."


@pytest.mark.parametrize("days", ["0", "-3"])
def test_recover_needs_at_least_one_day(days: str) -> None:
    with pytest.raises(CommandError, match=f"--days must be at least 1, not {days}"):
        run("recover_reports", "--days", days)


# --- the nightly task and its schedule ---------------------------------------------------------------


def test_nightly_task_makes_yesterday_final_and_today_provisional(example: Customer) -> None:
    done = tasks.aggregate_nightly()

    assert done == [day.isoformat() for day in aggregation.days_to_report(DAY2, TODAY)]
    assert DAY2.isoformat() in done
    yesterday = CustomerDay.objects.get(customer=example, date=DAY2)
    assert (yesterday.provisional, yesterday.total_nr_trades) == (False, 3)
    assert set(CustomerDay.objects.values_list("provisional", flat=True).filter(date=TODAY)) <= {True}
    # running it again (a redelivery) leaves the same rows
    before = _all_rows()
    assert tasks.aggregate_nightly() == done
    assert _all_rows() == before


def test_beat_runs_the_aggregation_after_the_close_on_the_reporting_queue(db: None) -> None:
    schedule = PeriodicTask.objects.get(name="Aggregate the trading day")
    assert (schedule.task, schedule.queue, schedule.enabled) == ("reporting.aggregate_nightly", "reporting", True)
    assert schedule.description
    crontab = schedule.crontab
    assert crontab is not None
    assert (crontab.minute, crontab.hour, crontab.day_of_week, crontab.day_of_month, crontab.month_of_year) == (
        "30",
        "16",
        "*",
        "*",
        "*",
    )
    assert str(crontab.timezone) == "America/New_York"
    for name in ("reporting.aggregate_nightly", "reporting.reaggregate_from"):
        assert settings.CELERY_TASK_ROUTES[name] == {"queue": "reporting"}
        assert name in celery_app.tasks


# --- corrections -------------------------------------------------------------------------------------


def _queued_reaggregations() -> list[list[Any]]:
    """The arguments of every `reporting.reaggregate_from` message waiting in the broker (no worker runs here)."""
    with celery_app.connection_for_write() as broker:
        raw = broker.default_channel.client.lrange("reporting", 0, -1)  # type: ignore[attr-defined]  # kombu's Redis channel
    found = []
    for item in raw:
        message = json.loads(item)
        if message["headers"]["task"] == "reporting.reaggregate_from":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append(args)
    return found


def test_a_bust_recomputes_its_day_after_commit(market: Market, django_capture_on_commit_callbacks: Any) -> None:
    # given a filled buy of today (children of at most 1,000: several trades), aggregated
    customer = market["customers"]["000002"]
    order = place(quantity=2500, price="260.00")
    drive(order)
    trades = list(Trade.objects.filter(order=order).order_by("pk"))
    assert len(trades) > 1
    aggregation.day_aggregate(TODAY)
    before = CustomerDay.objects.get(customer=customer, date=TODAY)
    assert (before.nr_trades, before.buy_notional) == (
        len(trades),
        sum(((t.price * t.quantity).quantize(Decimal("0.01")) for t in trades), Decimal(0)),
    )
    queued = len(_queued_reaggregations())

    # when ops bust one of its trades and the correction commits
    busted = trades[0]
    with django_capture_on_commit_callbacks(execute=True):
        services.trade_correct(trade_id=busted.pk, bust=True, reason="clearly erroneous", actor="ops")

    # then one re-aggregation of the trade's day went to the reporting queue, by name
    sent = _queued_reaggregations()
    assert len(sent) == queued + 1
    assert [TODAY.isoformat()] in sent
    # and a worker running it recomputes the day without the busted trade
    assert celery_app.tasks["reporting.reaggregate_from"].apply(args=(TODAY.isoformat(),)).get() == 1
    after = CustomerDay.objects.get(customer=customer, date=TODAY)
    assert after.nr_trades == before.nr_trades - 1
    assert after.buy_notional == before.buy_notional - (busted.price * busted.quantity).quantize(Decimal("0.01"))
    assert after.commission_paid == before.commission_paid - busted.fee
    assert TickerDay.objects.get(date=TODAY).volume == sum(t.quantity for t in trades[1:])


def test_a_correction_of_a_day_with_nothing_stored_stores_nothing(example: Customer) -> None:
    # nothing aggregated yet: nothing is stale, and no day is stored for it
    assert tasks.reaggregate_from(DAY1.isoformat()) == 0
    assert not CustomerDay.objects.exists()

    # with DAY2 stored, a correction of DAY1 recomputes DAY1 and every stored day after it
    aggregation.days_aggregate([DAY2])
    assert tasks.reaggregate_from(DAY1.isoformat()) == 2
    assert sorted(set(CustomerDay.objects.values_list("date", flat=True))) == [DAY1, DAY2]


# --- the admin ---------------------------------------------------------------------------------------


def test_admin_action_reruns_the_selected_day_and_the_days_after(example: Customer, admin_client: Client) -> None:
    # given DAY1 and DAY2 aggregated, then the sale busted behind the aggregation's back
    aggregation.days_aggregate([DAY1, DAY2])
    Trade.objects.filter(customer=example, direction="Sell", busted=False).update(busted=True)
    row = CustomerDay.objects.get(customer=example, date=DAY1)
    changelist = reverse("admin:reporting_customerday_changelist")
    assert b"Re-run aggregation for this day" in admin_client.get(changelist).content

    # when the admin re-runs DAY1's aggregation from the customer days' list
    response = admin_client.post(
        changelist, {"action": "rerun_aggregation", "_selected_action": [str(row.pk)]}, follow=True
    )

    # then DAY1 and DAY2 follow the trades, and the message says so
    assert [str(message) for message in response.context["messages"]] == [
        f"Re-aggregated 2 days from {DAY1} (selected: {DAY1})."
    ]
    day1 = CustomerDay.objects.get(customer=example, date=DAY1)
    assert (day1.nr_trades, day1.sell_notional) == (1, Decimal("0.00"))
    assert CustomerDay.objects.get(customer=example, date=DAY2).remaining_fund == F - Decimal("29726.25")

    # and from the ticker days' list likewise: DAY2's only trade amended from 20 to 10 shares
    Trade.objects.filter(customer=example, trade_date=at(DAY2, 10), busted=False).update(quantity=10)
    ticker_row = TickerDay.objects.get(date=DAY2)
    assert ticker_row.volume == 20
    response = admin_client.post(
        reverse("admin:reporting_tickerday_changelist"),
        {"action": "rerun_aggregation", "_selected_action": [str(ticker_row.pk)]},
        follow=True,
    )
    assert [str(message) for message in response.context["messages"]] == [
        f"Re-aggregated 1 day from {DAY2} (selected: {DAY2})."
    ]
    assert TickerDay.objects.get(date=DAY2).volume == 10
    assert PositionSnapshot.objects.get(customer=example, date=DAY2).quantity == 5110


def test_admin_action_needs_the_permission(example: Customer, client: Client) -> None:
    aggregation.days_aggregate([DAY1])
    Trade.objects.filter(customer=example, direction="Sell", busted=False).update(busted=True)
    viewer = staff_user("viewer")
    viewer.user_permissions.add(*_view_permissions())
    client.force_login(viewer)
    row = CustomerDay.objects.get(customer=example, date=DAY1)

    changelist = reverse("admin:reporting_customerday_changelist")
    assert client.get(changelist).status_code == 200
    assert b"Re-run aggregation" not in client.get(changelist).content
    client.post(changelist, {"action": "rerun_aggregation", "_selected_action": [str(row.pk)]})

    assert CustomerDay.objects.get(pk=row.pk).nr_trades == 2


def _view_permissions() -> list[Any]:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(content_type__app_label="reporting", codename__startswith="view_"))
