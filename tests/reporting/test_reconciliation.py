"""Reconciliation: a clean run says so; each check finds its discrepancy as exactly one break; the
break workflow (assign, comment, resolve); the nightly task and its schedule, the command and the admin.

Discrepancies are made the way they happen in real life, behind the services' backs: an order row
edited by hand, a drop-copy row the venue lost (deleted with foreign-key triggers off), a ledger entry
changed with the append-only trigger off, a balanced posting nobody can explain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from broker.exceptions import ApplicationError, Conflict
from orders import services
from orders.models import Direction, Order, OrderStatus, Trade
from pools.models import Execution
from reporting import tasks
from reporting.models import Break, BreakComment, BreakKind, BreakStatus, ReconciliationRun, RunStatus
from reporting.reconciliation import break_assign, break_comment, break_resolve, reconciliation_run
from settlement.models import Account, AccountKind, LedgerEntry, Leg, Posting, PostingPurpose
from tests.conftest import Market, drive, place
from tests.invariants import all_violations

pytestmark = pytest.mark.django_db


@pytest.fixture
def books(market: Market) -> dict[str, Order]:
    """A settled trading day: buys (one big enough to try the dark pools), sells from the opening
    positions and from a buy, two customers matching each other (one execution, two broker trades),
    and an order resting with nothing filled."""
    orders = {
        "big_buy": place("000002", quantity=2500, price="260.00"),
        "buy": place("000003", quantity=400, price="260.00"),
        "sell": place("000004", direction="Sell", quantity=300, price="250.00"),
        "resting": place("000005", quantity=200, price="200.00", timeInForce="GTC"),
        "maker_sell": place("000006", direction="Sell", quantity=100, price="256.62", timeInForce="GTC"),
    }
    for order in orders.values():
        drive(order)
    orders["taker_buy"] = place("000007", quantity=100, price="256.62")
    drive(orders["taker_buy"])
    orders["sell_after_buy"] = place("000003", direction="Sell", quantity=150, price="250.00")
    drive(orders["sell_after_buy"])
    services.trades_settle(trade_ids=list(Trade.objects.order_by("pk").values_list("pk", flat=True)))
    return orders


def only_break(run: ReconciliationRun) -> Break:
    breaks = list(run.breaks.all())
    assert len(breaks) == 1, [(b.kind, b.expected, b.actual) for b in breaks]
    return breaks[0]


@contextmanager
def behind_the_services() -> Iterator[None]:
    """Write what the database itself refuses: triggers off for this session (the ledger's append-only
    trigger, foreign-key checks), as `session_replication_role = replica` does for a replica.

    First, what COMMIT would check (foreign keys, balanced postings) is checked now: the test's rows are
    then as good as committed, and the tamper is not refused when the test's transaction ends. (On
    committed rows `ALTER TABLE settlement_ledgerentry DISABLE TRIGGER settlement_ledger_append_only`
    does the same for the ledger, but Postgres refuses that ALTER inside a transaction that still has
    pending trigger events, as this test's own inserts do.)
    """
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute("SET LOCAL session_replication_role = replica")
        yield
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def lose_drop_copy_row(execution_id: int) -> None:
    """The venue's drop copy lost a row (trades still cite it)."""
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM pools_execution WHERE id = %s", [execution_id])


def shared_execution() -> Execution:
    """The execution where two customers met: two broker trades."""
    execution_id = (
        Trade.objects.values("execution_id").annotate(trades=Count("id")).filter(trades=2).get()["execution_id"]
    )
    return Execution.objects.get(pk=execution_id)


def balanced_posting(*, lines: list[tuple[Account, Decimal]]) -> Posting:
    """A balanced journal entry no trade, funding or transfer explains (inserting is allowed; it is append-only)."""
    posting = Posting.objects.create(purpose=PostingPurpose.TRADE_SETTLEMENT, description="fat finger")
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            posting=posting, account=account, asset=account.asset, amount=amount, leg=Leg.CASH, purpose=posting.purpose
        )
        for account, amount in lines
    )
    return posting


def staff_user(username: str) -> User:
    return User.objects.create_user(username=username, is_staff=True)


# --- a clean run -------------------------------------------------------------------------------------


def test_clean_run_records_zero_breaks_and_says_so(books: dict[str, Order]) -> None:
    # given a day of buys and sells, all settled, that the test helpers agree is consistent
    assert Trade.objects.filter(direction=Direction.SELL).exists()
    assert not Trade.objects.filter(settlement_date__isnull=True).exists()
    assert all_violations() == []

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then it recorded a clean run of all six checks and no break
    run.refresh_from_db()
    assert run.status == RunStatus.CLEAN
    assert (run.checks_run, run.breaks_found) == (6, 0)
    assert run.summary == "6 checks, 0 breaks: books reconcile"
    assert run.triggered_by == "test"
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at
    assert not Break.objects.exists()


def test_a_run_costs_a_fixed_number_of_queries(books: dict[str, Order], django_assert_max_num_queries: object) -> None:
    # every check is a few GROUP BY queries over all rows, never a query per order, trade or customer:
    # 14 for the checks, the run's insert and update, and two savepoints' SAVEPOINT and RELEASE
    with django_assert_max_num_queries(20):  # type: ignore[operator]
        run = reconciliation_run(triggered_by="test")
    assert run.status == RunStatus.CLEAN


@pytest.mark.django_db(transaction=True)
def test_a_run_on_its_own_reads_one_repeatable_read_snapshot(market: Market) -> None:
    # given no open transaction (as in the nightly task), when reconciliation runs
    with CaptureQueriesContext(connection) as queries:
        run = reconciliation_run(triggered_by="beat")

    # then its checks ran in their own read-only snapshot, and the run and its result were committed
    assert "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY" in [query["sql"] for query in queries]
    assert ReconciliationRun.objects.get(pk=run.pk).status == RunStatus.CLEAN


def test_corrected_trades_still_reconcile(books: dict[str, Order]) -> None:
    # given ops amended one settled trade's price and busted the shared execution (both customers' trades)
    amended = Trade.objects.filter(order=books["buy"]).order_by("pk").first()
    assert amended is not None
    services.trade_correct(trade_id=amended.pk, price=Decimal("255.00"), reason="venue correction", actor="ops")
    shared = shared_execution()
    busted = Trade.objects.filter(execution=shared).order_by("pk").first()
    assert busted is not None
    services.trade_correct(trade_id=busted.pk, bust=True, reason="clearly erroneous", actor="ops")
    assert all_violations() == []

    # when reconciliation runs, then reversals, new versions and busts all reconcile
    run = reconciliation_run(triggered_by="test")
    assert run.summary == "6 checks, 0 breaks: books reconcile"


def test_trade_busted_at_the_broker_but_not_at_the_venue(books: dict[str, Order]) -> None:
    # given a trade flagged busted by hand, its execution not
    trade = Trade.objects.filter(order=books["sell"]).order_by("pk").first()
    assert trade is not None
    Trade.objects.filter(pk=trade.pk).update(busted=True)
    Order.objects.filter(pk=books["sell"].pk).update(
        filled_quantity=books["sell"].filled_quantity - trade.quantity, status=OrderStatus.CANCELLED
    )

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then the broker/venue disagreement is reported, as is the cash and holding the ledger still has
    kinds = sorted(item.kind for item in run.breaks.all())
    assert kinds == [BreakKind.CUSTOMER_CASH_MISMATCH, BreakKind.EXECUTION_MISMATCH, BreakKind.HOLDING_MISMATCH]
    execution_break = run.breaks.get(kind=BreakKind.EXECUTION_MISMATCH)
    assert execution_break.records["trades"] == [trade.pk]
    assert execution_break.actual.endswith(", busted")
    assert not execution_break.expected.endswith(", busted")


# --- each check finds its discrepancy, once ----------------------------------------------------------


def test_order_whose_filled_quantity_is_not_its_trades(books: dict[str, Order]) -> None:
    # given a resting order with no trade whose filled quantity was edited by hand
    resting = books["resting"]
    assert resting.status == OrderStatus.ROUTED
    Order.objects.filter(pk=resting.pk).update(filled_quantity=7)

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then exactly that order is a break
    item = only_break(run)
    assert item.kind == BreakKind.ORDER_FILL_MISMATCH
    assert item.records == {"order": resting.pk, "orderId": str(resting.order_id), "customer": "000005"}
    assert item.expected == "filled quantity 0 (sum of its trades)"
    assert item.actual == "filled quantity 7"
    assert item.status == BreakStatus.OPEN
    assert run.status == RunStatus.BREAKS
    assert run.summary == "6 checks, 1 break: 1 order_fill_mismatch"


def test_trade_whose_venue_execution_is_missing(books: dict[str, Order]) -> None:
    # given a venue lost the drop-copy row of an execution where two customers met (two broker trades)
    execution = shared_execution()
    trade_ids = sorted(Trade.objects.filter(execution=execution).values_list("pk", flat=True))
    lose_drop_copy_row(execution.pk)

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then the missing execution is one break naming both trades, and the pool totals do not repeat it
    item = only_break(run)
    assert item.kind == BreakKind.TRADE_WITHOUT_EXECUTION
    assert item.records == {"execution": execution.pk, "pool": "BZX", "trades": trade_ids}
    assert item.expected == f"execution {execution.pk} in BZX's drop copy: 100 COIN @ 256.6200"
    assert item.actual == (
        f"no execution {execution.pk} in BZX's drop copy; trades {trade_ids[0]}, {trade_ids[1]} cite it"
    )


def test_trade_that_differs_from_its_execution(books: dict[str, Order]) -> None:
    # given the venue's record of the shared execution shows another price than the broker's trades
    execution = shared_execution()
    Execution.objects.filter(pk=execution.pk).update(price=Decimal("256.63"))
    maker, taker = Trade.objects.filter(execution=execution).order_by("liquidity")

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then that execution is one break listing each trade against the venue's view of its side
    item = only_break(run)
    assert item.kind == BreakKind.EXECUTION_MISMATCH
    assert item.records == {"execution": execution.pk, "pool": "BZX", "trades": sorted([maker.pk, taker.pk])}
    first, second = sorted([maker, taker], key=lambda trade: trade.pk)
    assert item.expected == "; ".join(
        f"trade {trade.pk} ({trade.liquidity}): BZX 100 COIN @ 256.6300, fee {trade.fee:.2f}, child {trade.child_id}"
        for trade in (first, second)
    )
    assert item.actual == item.expected.replace("256.6300", "256.6200")


def test_venue_execution_the_broker_never_booked(books: dict[str, Order]) -> None:
    # given the venue reports one more fill of a broker child than the broker has a trade for
    trade = Trade.objects.filter(order=books["buy"]).select_related("execution").first()
    assert trade is not None
    booked = trade.execution
    extra = Execution.objects.create(
        book_id=booked.book_id,
        pool_id=booked.pool_id,
        ticker_id=booked.ticker_id,
        maker_id=booked.maker_id,
        taker_id=booked.taker_id,
        aggressor_side=booked.aggressor_side,
        price=booked.price,
        quantity=10,
        maker_fee=Decimal("0.00"),
        taker_fee=Decimal("0.01"),
        executed_at=timezone.now(),
    )

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then that pool's totals are one break pointing at the unbooked execution
    item = only_break(run)
    assert item.kind == BreakKind.EXECUTION_MISMATCH
    pool = booked.pool.name
    assert item.records == {"pool": pool, "executions": [extra.pk]}
    assert item.expected.startswith(f"{pool} executed for broker orders: ")
    assert item.actual.startswith(f"broker trades on {pool}: ")
    venue_fills, broker_fills = (int(text.split(": ")[1].split(" fills")[0]) for text in (item.expected, item.actual))
    assert venue_fills == broker_fills + 1


def test_ledger_entry_tampered_in_a_house_account(books: dict[str, Order]) -> None:
    # given one fee-income entry (a house account, no customer's) changed behind the ledger's back
    entry = LedgerEntry.objects.filter(account__kind=AccountKind.FEE_INCOME).order_by("pk").first()
    assert entry is not None
    with behind_the_services():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=entry.amount + Decimal("1.00"))

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then the cash ledger is one break naming the posting that no longer balances; no customer is affected
    item = only_break(run)
    assert item.kind == BreakKind.LEDGER_UNBALANCED
    assert item.records == {"asset": "USD", "postings": [{"posting": entry.posting_id, "sum": "1.00"}]}
    assert item.expected == "USD entries sum to 0"
    assert item.actual == "USD entries sum to 1.00"


def test_customer_cash_that_funds_and_trades_do_not_explain(books: dict[str, Order]) -> None:
    # given a balanced posting that moved 12.34 of customer 000004's cash to fee income
    customer = books["sell"].customer
    cash = Account.objects.get(kind=AccountKind.CUSTOMER_CASH, customer=customer)
    fees = Account.objects.get(kind=AccountKind.FEE_INCOME, asset="USD")
    before = LedgerEntry.objects.filter(account=cash).values_list("amount", flat=True)
    balance = sum(before, Decimal(0))
    balanced_posting(lines=[(cash, Decimal("-12.34")), (fees, Decimal("12.34"))])

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then the ledger still balances, and that customer's cash is the one break
    item = only_break(run)
    assert item.kind == BreakKind.CUSTOMER_CASH_MISMATCH
    assert item.records == {"customer": "000004"}
    trades = balance - customer.initial_funds
    assert (
        item.expected == f"cash {balance:.2f} (initial funds {customer.initial_funds:.2f}, settled trades {trades:.2f})"
    )
    assert item.actual == f"cash {balance - Decimal('12.34'):.2f} in the ledger"


def test_holding_that_transfers_and_trades_do_not_explain(books: dict[str, Order]) -> None:
    # given a balanced posting that moved 10 COIN from customer 000003 to a venue's clearing account
    customer = books["buy"].customer
    shares = Account.objects.get(kind=AccountKind.CUSTOMER_SECURITIES, customer=customer, asset="COIN")
    clearing = Account.objects.filter(kind=AccountKind.VENUE_CLEARING, asset="COIN").order_by("pk").first()
    assert clearing is not None
    balanced_posting(lines=[(shares, Decimal("-10")), (clearing, Decimal("10"))])

    # when reconciliation runs
    run = reconciliation_run(triggered_by="test")

    # then that customer's COIN position is the one break (5000 transferred in, +400 bought, -150 sold)
    item = only_break(run)
    assert item.kind == BreakKind.HOLDING_MISMATCH
    assert item.records == {"customer": "000003", "ticker": "COIN"}
    assert item.expected == "5250 COIN (transferred in 5000, settled trades 250)"
    assert item.actual == "5240 COIN in the ledger"


def test_tampered_ledger_entry_and_lost_execution_are_exactly_two_breaks(books: dict[str, Order]) -> None:
    # given a clean run first
    assert reconciliation_run(triggered_by="test").status == RunStatus.CLEAN
    # and then one venue-clearing entry (house) tampered and one venue execution deleted
    entry = LedgerEntry.objects.filter(account__kind=AccountKind.VENUE_CLEARING, asset="USD").order_by("pk").first()
    assert entry is not None
    with behind_the_services():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=entry.amount - Decimal("0.50"))
    execution_id = Trade.objects.filter(order=books["sell"]).values_list("execution_id", flat=True).first()
    assert execution_id is not None
    lose_drop_copy_row(execution_id)

    # when reconciliation runs again
    run = reconciliation_run(triggered_by="test")

    # then it reports exactly those two breaks
    assert run.status == RunStatus.BREAKS
    assert run.breaks_found == 2
    assert run.summary == "6 checks, 2 breaks: 1 ledger_unbalanced, 1 trade_without_execution"
    kinds = {item.kind: item for item in run.breaks.all()}
    assert set(kinds) == {BreakKind.LEDGER_UNBALANCED, BreakKind.TRADE_WITHOUT_EXECUTION}
    assert kinds[BreakKind.LEDGER_UNBALANCED].records["postings"] == [{"posting": entry.posting_id, "sum": "-0.50"}]
    assert kinds[BreakKind.TRADE_WITHOUT_EXECUTION].records["execution"] == execution_id


# --- working a break ---------------------------------------------------------------------------------


@pytest.fixture
def open_break(books: dict[str, Order]) -> Break:
    Order.objects.filter(pk=books["resting"].pk).update(filled_quantity=3)
    return only_break(reconciliation_run(triggered_by="test"))


def test_assign_comment_and_resolve_a_break(open_break: Break) -> None:
    # given two staff users
    lead, analyst = staff_user("lead"), staff_user("analyst")

    # when the lead assigns the break, the analyst comments and resolves it
    assigned = break_assign(break_id=open_break.pk, assignee=analyst, actor=lead)
    comment = break_comment(break_id=open_break.pk, text="  Order row edited by hand; restoring.  ", actor=analyst)
    break_resolve(break_id=open_break.pk, resolution="Restored from the trades.", actor=analyst)

    # then each step is in the break and in its history, with who did it
    assert assigned.status == BreakStatus.ASSIGNED
    assert assigned.assignee_id == analyst.pk
    assert comment.text == "Order row edited by hand; restoring."
    open_break.refresh_from_db()
    assert open_break.status == BreakStatus.RESOLVED
    assert open_break.resolution == "Restored from the trades."
    assert open_break.resolved_by_id == analyst.pk
    assert open_break.resolved_at is not None
    history = list(
        BreakComment.objects.filter(reconciliation_break=open_break).values_list(
            "author__username", "from_status", "to_status", "text"
        )
    )
    assert history == [
        ("lead", "Open", "Assigned", "Assigned to analyst."),
        ("analyst", "", "", "Order row edited by hand; restoring."),
        ("analyst", "Assigned", "Resolved", "Resolved: Restored from the trades."),
    ]


def test_replays_are_no_ops_and_a_resolved_break_stays_resolved(open_break: Break) -> None:
    # given an assigned break
    analyst = staff_user("analyst")
    break_assign(break_id=open_break.pk, assignee=analyst, actor=analyst)

    # when it is assigned to the same person again, then nothing is added
    break_assign(break_id=open_break.pk, assignee=analyst, actor=analyst)
    assert BreakComment.objects.filter(reconciliation_break=open_break).count() == 1

    # when it is resolved twice, then the second is a no-op
    break_resolve(break_id=open_break.pk, resolution="Fixed.", actor=analyst)
    again = break_resolve(break_id=open_break.pk, resolution="Something else.", actor=analyst)
    assert again.resolution == "Fixed."
    assert BreakComment.objects.filter(reconciliation_break=open_break).count() == 2

    # and it can no longer be assigned, though it can still be commented on
    with pytest.raises(Conflict):
        break_assign(break_id=open_break.pk, assignee=staff_user("other"), actor=analyst)
    break_comment(break_id=open_break.pk, text="Checked again the next morning.", actor=analyst)


def test_resolution_and_comment_text_are_required(open_break: Break) -> None:
    analyst = staff_user("analyst")
    with pytest.raises(ApplicationError) as no_resolution:
        break_resolve(break_id=open_break.pk, resolution="   ", actor=analyst)
    assert no_resolution.value.errors == {"resolution": ["Say how the break was resolved."]}
    with pytest.raises(ApplicationError) as no_text:
        break_comment(break_id=open_break.pk, text="", actor=analyst)
    assert no_text.value.errors == {"text": ["Write a comment."]}
    open_break.refresh_from_db()
    assert open_break.status == BreakStatus.OPEN
    assert not BreakComment.objects.exists()


# --- the command, the task and its schedule ----------------------------------------------------------


def test_command_prints_the_summary_last_and_exits_0_when_clean(books: dict[str, Order]) -> None:
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert out.getvalue().splitlines()[-1].endswith("6 checks, 0 breaks: books reconcile")
    assert ReconciliationRun.objects.get().triggered_by == "command"


def test_command_lists_breaks_and_exits_1(books: dict[str, Order]) -> None:
    Order.objects.filter(pk=books["resting"].pk).update(filled_quantity=7)
    out = StringIO()
    with pytest.raises(SystemExit) as exit_status:
        call_command("reconcile", stdout=out)
    assert exit_status.value.code == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("break #")
    assert "order_fill_mismatch" in lines[0]
    assert lines[-1].endswith("6 checks, 1 break: 1 order_fill_mismatch")


def test_nightly_task_runs_reconciliation_on_the_reporting_queue(market: Market) -> None:
    # the task is one service call and returns the run's id
    run_id = tasks.reconcile()
    assert ReconciliationRun.objects.get(pk=run_id).triggered_by == "beat"
    # routed to the reporting queue, and scheduled by beat at 02:00 UTC every day
    assert settings.CELERY_TASK_ROUTES["reporting.reconcile"] == {"queue": "reporting"}
    schedule = PeriodicTask.objects.get(task="reporting.reconcile")
    assert schedule.queue == "reporting"
    assert schedule.enabled
    assert schedule.crontab is not None
    crontab = schedule.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, crontab.day_of_month, crontab.month_of_year) == (
        "0",
        "2",
        "*",
        "*",
        "*",
    )
    assert str(crontab.timezone) == "UTC"


# --- the admin ---------------------------------------------------------------------------------------


def test_admin_run_now_button_runs_and_reports(books: dict[str, Order], admin_client: Client) -> None:
    # the changelist shows the button
    changelist = admin_client.get(reverse("admin:reporting_reconciliationrun_changelist"))
    assert b"Run reconciliation now" in changelist.content

    # pressing it runs reconciliation and shows the run with its message
    response = admin_client.post(reverse("admin:reporting_reconciliationrun_run"), follow=True)
    run = ReconciliationRun.objects.get()
    assert run.triggered_by == "admin:admin"
    assert response.redirect_chain[-1][0] == reverse("admin:reporting_reconciliationrun_change", args=[run.pk])
    assert [str(message) for message in response.context["messages"]] == [
        f"Clean: 0 breaks (reconciliation #{run.pk}: 6 checks, 0 breaks: books reconcile)."
    ]

    # and with a break, the message counts it; a GET does not run anything
    Order.objects.filter(pk=books["resting"].pk).update(filled_quantity=7)
    response = admin_client.post(reverse("admin:reporting_reconciliationrun_run"), follow=True)
    assert next(str(message) for message in response.context["messages"]).startswith("1 break (reconciliation #")
    assert admin_client.get(reverse("admin:reporting_reconciliationrun_run")).status_code == 405
    assert ReconciliationRun.objects.count() == 2


def test_admin_run_now_needs_the_permission(books: dict[str, Order], client: Client) -> None:
    viewer = staff_user("viewer")
    client.force_login(viewer)
    response = client.post(reverse("admin:reporting_reconciliationrun_run"))
    assert response.status_code == 403
    assert not ReconciliationRun.objects.exists()


def test_admin_break_form_assigns_comments_and_resolves_through_the_services(
    open_break: Break, admin_client: Client
) -> None:
    analyst = staff_user("analyst")
    url = reverse("admin:reporting_break_change", args=[open_break.pk])
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(
        url,
        {
            "assignee": analyst.pk,
            "comment": "Looked at the order's events.",
            "resolution": "Restored the filled quantity.",
            "comments-TOTAL_FORMS": "0",
            "comments-INITIAL_FORMS": "0",
            "comments-MIN_NUM_FORMS": "0",
            "comments-MAX_NUM_FORMS": "1000",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    open_break.refresh_from_db()
    assert (open_break.status, open_break.assignee_id) == (BreakStatus.RESOLVED, analyst.pk)
    assert open_break.resolved_by is not None
    assert open_break.resolved_by.get_username() == "admin"
    assert list(open_break.comments.values_list("to_status", "text")) == [
        ("Assigned", "Assigned to analyst."),
        ("", "Looked at the order's events."),
        ("Resolved", "Resolved: Restored the filled quantity."),
    ]
    # the filters and the resolved break's page render
    assert (
        admin_client.get(reverse("admin:reporting_break_changelist"), {"kind": "order_fill_mismatch"}).status_code
        == 200
    )
    assert admin_client.get(url).status_code == 200
