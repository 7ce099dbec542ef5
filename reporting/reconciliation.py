"""Reconciliation: prove that orders, venue drop copies and the ledger tell one story, or record where not.

`reconciliation_run` reads every check from one consistent snapshot (a REPEATABLE READ, READ ONLY
transaction), so trading and settlement may carry on while it runs: a match writes its executions,
trades and fills in one transaction and a settlement its posting and `settlementDate` in one, and the
snapshot sees each of them whole or not at all. Every check is a handful of GROUP BY queries, never a
loop over trades, so a run stays in seconds for 10^5 trades.

One break per discrepancy: each check names the records that disagree once (one break per order,
per missing execution, per execution whose broker trades differ, per pool whose totals differ after
those, per unbalanced asset, per customer, per holding, per account whose folded balance is not its
entries). Checks compare different pairs of records, so one bad row can rightly fail two of them: a
tampered *customer* cash entry both unbalances the ledger and breaks that customer's cash; a tampered
house entry (fee income, venue clearing) unbalances the ledger only, and its account's folded balance
too once the entry has been folded into it.

Corrections (`orders.services.trade_correct`) are part of the story: a busted trade and its busted
execution count for nothing, an amended one at its current version.

It lives in `reporting` because it reads across orders, pools and settlement; settlement, below
orders, may not import them. It writes only its own runs and breaks.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Case, DecimalField, ExpressionWrapper, F, IntegerField, Q, QuerySet, Sum, When
from django.db.models.functions import Coalesce, Round
from django.utils import timezone

from broker.exceptions import ApplicationError, Conflict
from broker.models import Customer
from broker.text import Text
from orders.models import Direction, Order, Trade
from reporting.models import (
    BREAK_TRANSITIONS,
    Break,
    BreakComment,
    BreakKind,
    BreakStatus,
    ReconciliationRun,
    RunStatus,
)
from settlement.models import Account, AccountKind, LedgerEntry, Posting, PostingPurpose
from settlement.selectors import asset_totals

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
CENT = Decimal("0.01")
# At most this many ids are listed in one break's records (the totals still count every one).
LISTED = 50
# Comments and resolutions are free text (TextFields): line breaks and tabs allowed, other control
# characters and NUL refused, at most FREE_TEXT_MAX_LENGTH characters.
COMMENT_TEXT = Text.of(BreakComment, "text")
RESOLUTION_TEXT = Text.of(Break, "resolution")


@dataclass(frozen=True, slots=True)
class Found:
    """A discrepancy a check found, before it is stored as a `Break`."""

    kind: str
    records: dict[str, Any]
    expected: str
    actual: str


def _amount(value: Decimal | int) -> str:
    """Cents when on the cent, else every significant place (a half-cent notional, a 6-place entry)."""
    value = Decimal(value)
    if value == value.quantize(CENT):
        return f"{value.quantize(CENT):f}"
    return f"{value.normalize():f}"


def _shares(value: Decimal | int) -> str:
    value = Decimal(value)
    return f"{value.normalize():f}" if value != value.to_integral_value() else str(int(value))


def _price(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.0001')):f}"


def _rows(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return list(cursor.fetchall())


# --- (a) orders against their trades -----------------------------------------------------------------


def check_order_fills() -> list[Found]:
    """Each order's filled quantity equals the sum of its trades' quantities (a busted trade counts 0)."""
    rows = (
        Order.objects.annotate(traded=Coalesce(Sum("trades__quantity", filter=Q(trades__busted=False)), 0))
        .exclude(filled_quantity=F("traded"))
        .order_by("pk")
        .values_list("pk", "order_id", "customer__customer_id", "filled_quantity", "traded")
    )
    return [
        Found(
            kind=BreakKind.ORDER_FILL_MISMATCH,
            records={"order": pk, "orderId": str(order_id), "customer": customer},
            expected=f"filled quantity {traded} (sum of its trades)",
            actual=f"filled quantity {filled}",
        )
        for pk, order_id, customer, filled, traded in rows
    ]


# --- (b) broker trades against the venues' executions ------------------------------------------------

# Trades whose execution row is gone: one break per missing execution, however many trades cite it.
MISSING_EXECUTIONS_SQL = """
SELECT t.execution_id, array_agg(t.id ORDER BY t.id), min(p.name), min(s.symbol), max(t.quantity), max(t.price)
FROM orders_trade t
JOIN pools_pool p ON p.id = t.pool_id
JOIN broker_ticker s ON s.id = t.ticker_id
WHERE NOT EXISTS (SELECT 1 FROM pools_execution e WHERE e.id = t.execution_id)
GROUP BY t.execution_id
ORDER BY t.execution_id
"""

# Trades that disagree with their execution: venue, ticker, quantity, price, the fee of their liquidity
# role, the venue order of that role not being their child order, or one side busted and not the other.
# (A correction changes the execution and all its trades in one transaction, so they still agree.)
MISMATCHED_TRADES_SQL = """
SELECT t.execution_id, t.id, t.liquidity,
       tp.name, ts.symbol, t.quantity, t.price, t.fee, t.child_id, t.busted,
       ep.name, es.symbol, e.quantity, e.price,
       CASE WHEN t.liquidity = 'Maker' THEN e.maker_fee ELSE e.taker_fee END,
       CASE WHEN t.liquidity = 'Maker' THEN mk.client_ref ELSE tk.client_ref END,
       e.busted
FROM orders_trade t
JOIN pools_execution e ON e.id = t.execution_id
JOIN pools_bookorder mk ON mk.id = e.maker_id
JOIN pools_bookorder tk ON tk.id = e.taker_id
JOIN pools_pool tp ON tp.id = t.pool_id
JOIN pools_pool ep ON ep.id = e.pool_id
JOIN broker_ticker ts ON ts.id = t.ticker_id
JOIN broker_ticker es ON es.id = e.ticker_id
WHERE t.pool_id <> e.pool_id
   OR t.ticker_id <> e.ticker_id
   OR t.quantity <> e.quantity
   OR t.price <> e.price
   OR t.fee <> CASE WHEN t.liquidity = 'Maker' THEN e.maker_fee ELSE e.taker_fee END
   OR t.child_id IS DISTINCT FROM CASE WHEN t.liquidity = 'Maker' THEN mk.client_ref ELSE tk.client_ref END
   OR t.busted <> e.busted
ORDER BY t.execution_id, t.id
"""

# Per pool: what the venue executed for broker orders (each execution counts once per side that is a
# broker child) against the broker's trades there, busted ones left out (they did not happen).
# Executions already reported above are left out on both sides, so a discrepancy is reported once; what
# remains differs only when an execution has no trade for a broker side, or a trade is counted twice.
_BROKER_SIDES = "((mk.client_ref IS NOT NULL)::int + (tk.client_ref IS NOT NULL)::int)"
POOL_TOTALS_SQL = f"""
WITH venue AS (
    SELECT e.pool_id,
           sum({_BROKER_SIDES}) AS fills,
           sum(e.quantity * {_BROKER_SIDES}) AS quantity,
           sum(e.price * e.quantity * {_BROKER_SIDES}) AS notional,
           sum(CASE WHEN mk.client_ref IS NOT NULL THEN e.maker_fee ELSE 0 END
               + CASE WHEN tk.client_ref IS NOT NULL THEN e.taker_fee ELSE 0 END) AS fees
    FROM pools_execution e
    JOIN pools_bookorder mk ON mk.id = e.maker_id
    JOIN pools_bookorder tk ON tk.id = e.taker_id
    WHERE NOT e.busted AND e.id <> ALL(%s::bigint[])
    GROUP BY e.pool_id
), broker AS (
    SELECT t.pool_id, count(*) AS fills, sum(t.quantity) AS quantity, sum(t.price * t.quantity) AS notional,
           sum(t.fee) AS fees
    FROM orders_trade t
    WHERE NOT t.busted AND t.execution_id <> ALL(%s::bigint[])
    GROUP BY t.pool_id
)
SELECT p.id, p.name,
       coalesce(v.fills, 0), coalesce(v.quantity, 0), coalesce(v.notional, 0), coalesce(v.fees, 0),
       coalesce(b.fills, 0), coalesce(b.quantity, 0), coalesce(b.notional, 0), coalesce(b.fees, 0)
FROM pools_pool p
LEFT JOIN venue v ON v.pool_id = p.id
LEFT JOIN broker b ON b.pool_id = p.id
ORDER BY p.id
"""  # noqa: S608 - the only interpolation is the constant _BROKER_SIDES

# Where a pool's totals differ: its executions whose broker trades do not number their broker sides.
UNMATCHED_EXECUTIONS_SQL = f"""
SELECT e.id
FROM pools_execution e
JOIN pools_bookorder mk ON mk.id = e.maker_id
JOIN pools_bookorder tk ON tk.id = e.taker_id
LEFT JOIN (SELECT execution_id, count(*) AS trades FROM orders_trade WHERE NOT busted GROUP BY execution_id) t
       ON t.execution_id = e.id
WHERE e.pool_id = %s AND NOT e.busted AND e.id <> ALL(%s::bigint[]) AND coalesce(t.trades, 0) <> {_BROKER_SIDES}
ORDER BY e.id
LIMIT {LISTED}
"""  # noqa: S608 - constants only


class _TradeAgainstExecution(NamedTuple):
    """One row of MISMATCHED_TRADES_SQL: a broker trade beside the venue's view of its side."""

    execution_id: int
    trade_id: int
    role: str
    pool: str
    symbol: str
    quantity: int
    price: Decimal
    fee: Decimal
    child_id: int
    busted: bool
    venue_pool: str
    venue_symbol: str
    venue_quantity: int
    venue_price: Decimal
    venue_fee: Decimal
    venue_child_id: int | None
    venue_busted: bool

    @property
    def venue_text(self) -> str:
        return (
            f"trade {self.trade_id} ({self.role}): {self.venue_pool} {self.venue_quantity} {self.venue_symbol} "
            f"@ {_price(self.venue_price)}, fee {_amount(self.venue_fee)}, child {self.venue_child_id}"
            + (", busted" if self.venue_busted else "")
        )

    @property
    def broker_text(self) -> str:
        return (
            f"trade {self.trade_id} ({self.role}): {self.pool} {self.quantity} {self.symbol} "
            f"@ {_price(self.price)}, fee {_amount(self.fee)}, child {self.child_id}"
            + (", busted" if self.busted else "")
        )


def _fills_text(fills: int, quantity: int, notional: Decimal, fees: Decimal) -> str:
    return f"{fills} fills, {quantity} shares, notional {_amount(notional)}, fees {_amount(fees)}"


def check_executions() -> list[Found]:
    """Every trade has its venue execution and agrees with it; per pool, venue and broker totals agree."""
    found: list[Found] = []
    excluded: list[int] = []
    for execution_id, trade_ids, pool, symbol, quantity, price in _rows(MISSING_EXECUTIONS_SQL):
        excluded.append(execution_id)
        ids = ", ".join(str(trade_id) for trade_id in trade_ids)
        cited_by = f"trade {ids} cites it" if len(trade_ids) == 1 else f"trades {ids} cite it"
        found.append(
            Found(
                kind=BreakKind.TRADE_WITHOUT_EXECUTION,
                records={"execution": execution_id, "pool": pool, "trades": trade_ids},
                expected=f"execution {execution_id} in {pool}'s drop copy: {quantity} {symbol} @ {_price(price)}",
                actual=f"no execution {execution_id} in {pool}'s drop copy; {cited_by}",
            )
        )
    per_execution: dict[int, list[_TradeAgainstExecution]] = defaultdict(list)
    for row in _rows(MISMATCHED_TRADES_SQL):
        mismatch = _TradeAgainstExecution(*row)
        per_execution[mismatch.execution_id].append(mismatch)
    for execution_id, mismatches in per_execution.items():
        excluded.append(execution_id)
        found.append(
            Found(
                kind=BreakKind.EXECUTION_MISMATCH,
                records={
                    "execution": execution_id,
                    "pool": mismatches[0].venue_pool,
                    "trades": [mismatch.trade_id for mismatch in mismatches],
                },
                expected="; ".join(mismatch.venue_text for mismatch in mismatches),
                actual="; ".join(mismatch.broker_text for mismatch in mismatches),
            )
        )
    for pool_id, pool, *totals in _rows(POOL_TOTALS_SQL, [excluded, excluded]):
        venue, broker = totals[:4], totals[4:]
        if venue == broker:
            continue
        unmatched = [row[0] for row in _rows(UNMATCHED_EXECUTIONS_SQL, [pool_id, excluded])]
        found.append(
            Found(
                kind=BreakKind.EXECUTION_MISMATCH,
                records={"pool": pool, "executions": unmatched},
                expected=f"{pool} executed for broker orders: {_fills_text(*venue)}",
                actual=f"broker trades on {pool}: {_fills_text(*broker)}",
            )
        )
    return found


# --- (c) the ledger balances -------------------------------------------------------------------------


def check_ledger_balanced() -> list[Found]:
    """Every asset's entries sum to zero (double entry); a break names the postings that do not balance."""
    found = []
    for asset, total in sorted(asset_totals().items()):
        if total == 0:
            continue
        unbalanced = (
            LedgerEntry.objects.filter(asset=asset)
            .values("posting_id")
            .annotate(total=Sum("amount"))
            .exclude(total=0)
            .order_by("posting_id")
            .values_list("posting_id", "total")[:LISTED]
        )
        postings = [{"posting": posting_id, "sum": _amount(posting_total)} for posting_id, posting_total in unbalanced]
        found.append(
            Found(
                kind=BreakKind.LEDGER_UNBALANCED,
                records={"asset": asset, "postings": postings},
                expected=f"{asset} entries sum to 0",
                actual=f"{asset} entries sum to {_amount(total)}",
            )
        )
    return found


# --- (d) customer cash and (e) holdings against funding, transfers and settled trades ----------------

_NOTIONAL = Round(
    ExpressionWrapper(F("price") * F("quantity"), output_field=DecimalField(max_digits=30, decimal_places=6)),
    precision=2,  # Postgres rounds numeric half away from zero: half-up, as settlement does
)


# The cash movements staff post by hand (settlement.services.movement_post).
_MOVEMENTS = (PostingPurpose.CASH_DEPOSIT, PostingPurpose.CASH_WITHDRAWAL, PostingPurpose.JOURNAL)


def _settled_trades() -> QuerySet[Trade]:
    """Trades whose current version is in the ledger: a bust reverses a settled trade's posting, and an
    amend reverses the old version and posts the new one, so the ledger holds exactly these."""
    return Trade.objects.filter(settlement_date__isnull=False, busted=False)


def check_customer_cash() -> list[Found]:
    """Each customer's settled cash (the same sum as `settlement.selectors.cash_balance`, for every
    customer in one query) equals initial funds, if funded, plus the deposits, withdrawals and cash
    journals staff posted, plus every settled trade's cash effect: -notional - fee for a buy,
    +notional - fee for a sell, notional rounded half-up to the cent."""
    funded = set(Posting.objects.filter(purpose=PostingPurpose.INITIAL_FUNDING).values_list("customer_id", flat=True))
    traded = dict(
        _settled_trades()
        .values("customer_id")
        .annotate(
            cash=Sum(
                Case(When(direction=Direction.BUY, then=-_NOTIONAL), default=_NOTIONAL) - F("fee"),
                output_field=DecimalField(max_digits=30, decimal_places=6),
            )
        )
        .values_list("customer_id", "cash")
    )
    ledger, moved = {}, {}
    for customer, total, movements in (
        LedgerEntry.objects.filter(account__kind=AccountKind.CUSTOMER_CASH)
        .values("account__customer_id")
        .annotate(total=Sum("amount"), movements=Sum("amount", filter=Q(purpose__in=_MOVEMENTS)))
        .values_list("account__customer_id", "total", "movements")
    ):
        ledger[customer], moved[customer] = total, movements
    found = []
    for pk, customer_id, initial_funds in Customer.objects.order_by("customer_id").values_list(
        "pk", "customer_id", "initial_funds"
    ):
        funds = initial_funds if pk in funded else ZERO
        trades, movements = traded.get(pk) or ZERO, moved.get(pk) or ZERO
        expected, actual = funds + movements + trades, ledger.get(pk) or ZERO
        if expected != actual:
            found.append(
                Found(
                    kind=BreakKind.CUSTOMER_CASH_MISMATCH,
                    records={"customer": customer_id},
                    expected=(
                        f"cash {_amount(expected)} (initial funds {_amount(funds)}, "
                        + (f"deposits, withdrawals and journals {_amount(movements)}, " if movements else "")
                        + f"settled trades {_amount(trades)})"
                    ),
                    actual=f"cash {_amount(actual)} in the ledger",
                )
            )
    return found


def check_holdings() -> list[Found]:
    """Each customer's shares of each ticker in the ledger equal what was transferred in plus the settled
    trades (buys add, sells take away)."""
    securities = LedgerEntry.objects.filter(account__kind=AccountKind.CUSTOMER_SECURITIES)
    transferred = {
        (customer, asset): total
        for customer, asset, total in securities.filter(
            purpose__in=(PostingPurpose.SECURITIES_TRANSFER_IN, PostingPurpose.JOURNAL)
        )
        .values("account__customer_id", "asset")
        .annotate(total=Sum("amount"))
        .values_list("account__customer_id", "asset", "total")
    }
    traded = {
        (customer, symbol): shares
        for customer, symbol, shares in _settled_trades()
        .values("customer_id", "ticker__symbol")
        .annotate(
            shares=Sum(
                Case(When(direction=Direction.BUY, then=F("quantity")), default=-F("quantity")),
                output_field=IntegerField(),
            )
        )
        .values_list("customer_id", "ticker__symbol", "shares")
    }
    ledger = {
        (customer, asset): total
        for customer, asset, total in securities.values("account__customer_id", "asset")
        .annotate(total=Sum("amount"))
        .values_list("account__customer_id", "asset", "total")
    }
    codes = dict(Customer.objects.values_list("pk", "customer_id"))
    found = []
    for key in sorted(set(transferred) | set(traded) | set(ledger), key=lambda k: (codes.get(k[0], ""), k[1])):
        transfers, trades = transferred.get(key) or ZERO, Decimal(traded.get(key) or 0)
        expected, actual = transfers + trades, ledger.get(key) or ZERO
        if expected != actual:
            customer, symbol = codes.get(key[0], str(key[0])), key[1]
            found.append(
                Found(
                    kind=BreakKind.HOLDING_MISMATCH,
                    records={"customer": customer, "ticker": symbol},
                    expected=(
                        f"{_shares(expected)} {symbol} (transferred in {_shares(transfers)}, "
                        f"settled trades {_shares(trades)})"
                    ),
                    actual=f"{_shares(actual)} {symbol} in the ledger",
                )
            )
    return found


# --- (f) the accounts' folded balances against their entries --------------------------------------


def check_folded_balances() -> list[Found]:
    """Every account's `folded_balance` is the sum of its entries up to `folded_upto`: buying power is
    read from it (settlement.services.ledger_fold), so a fold that went wrong must show here."""
    account, entry = Account._meta.db_table, LedgerEntry._meta.db_table
    rows = _rows(
        f"""
        SELECT a.id, a.kind, a.customer_id, a.pool_id, a.asset, a.folded_upto, a.folded_balance,
               COALESCE(SUM(e.amount), 0)
        FROM {account} a LEFT JOIN {entry} e ON e.account_id = a.id AND e.id <= a.folded_upto
        GROUP BY a.id HAVING a.folded_balance <> COALESCE(SUM(e.amount), 0)
        ORDER BY a.id
        """  # noqa: S608  (only the tables' own names go into the text)
    )
    return [
        Found(
            kind=BreakKind.FOLDED_BALANCE_MISMATCH,
            records={
                "account": account_id,
                "kind": kind,
                "customer": customer,
                "pool": pool,
                "asset": asset,
                "foldedUpto": upto,
            },
            expected=f"{asset} entries up to entry {upto} sum to {_amount(entries)}",
            actual=f"folded balance {_amount(folded)}",
        )
        for account_id, kind, customer, pool, asset, upto, folded, entries in rows
    ]


CHECKS: tuple[Callable[[], list[Found]], ...] = (
    check_order_fills,
    check_executions,
    check_ledger_balanced,
    check_customer_cash,
    check_holdings,
    check_folded_balances,
)


@contextmanager
def _snapshot() -> Iterator[None]:
    """One consistent, read-only view of the database for every check.

    Inside a caller's transaction (a test, a shell session) the caller's view is used as it is.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _summary(checks: int, found: list[Found]) -> str:
    head = f"{checks} checks, {len(found)} break{'' if len(found) == 1 else 's'}"
    if not found:
        return f"{head}: books reconcile"
    per_kind = Counter(item.kind for item in found)
    return f"{head}: " + ", ".join(f"{count} {kind}" for kind, count in sorted(per_kind.items()))


def reconciliation_run(*, triggered_by: str) -> ReconciliationRun:
    """Run every check, store each discrepancy as an open `Break`, and finish the run Clean or Breaks.

    The run row is written first (status Running) so a long or failed run is visible; a check that
    raises marks it Failed and re-raises. Running twice (a redelivered task) records two runs: harmless.
    """
    run = ReconciliationRun.objects.create(triggered_by=triggered_by)
    try:
        with _snapshot():
            found = [item for check in CHECKS for item in check()]
    except Exception as error:
        run.status, run.finished_at, run.summary = RunStatus.FAILED, timezone.now(), f"failed: {error!r}"[:2000]
        run.save(update_fields=["status", "finished_at", "summary"])
        raise
    with transaction.atomic():
        Break.objects.bulk_create(
            Break(run=run, kind=item.kind, records=item.records, expected=item.expected, actual=item.actual)
            for item in found
        )
        run.status = RunStatus.BREAKS if found else RunStatus.CLEAN
        run.checks_run, run.breaks_found = len(CHECKS), len(found)
        run.summary, run.finished_at = _summary(len(CHECKS), found), timezone.now()
        run.save(update_fields=["status", "checks_run", "breaks_found", "summary", "finished_at"])
    (logger.warning if found else logger.info)("reconciliation #%s (%s): %s", run.pk, triggered_by, run.summary)
    return run


# --- working the breaks ------------------------------------------------------------------------------

Actor = AbstractBaseUser | None


def _locked(break_id: int) -> Break:
    return Break.objects.select_for_update(of=("self",), no_key=True).get(pk=break_id)


def _transition(item: Break, *, to: str, actor: Actor, text: str) -> None:
    """Move `item` to status `to` if the workflow allows it, and record the change in its history.

    Caller holds the break's row lock and saves it.
    """
    if to not in BREAK_TRANSITIONS[item.status]:
        raise Conflict(f"A {item.status.lower()} break cannot become {to.lower()}.", field="status")
    BreakComment.objects.create(
        reconciliation_break=item,
        author_id=actor.pk if actor is not None else None,
        text=text,
        from_status=item.status,
        to_status=to,
    )
    item.status = to


@transaction.atomic
def break_assign(*, break_id: int, assignee: AbstractBaseUser, actor: Actor) -> Break:
    """Give a break to `assignee` (also a hand-over). Assigning it again to the same person is a no-op."""
    item = _locked(break_id)
    if item.status == BreakStatus.ASSIGNED and item.assignee_id == assignee.pk:
        return item
    _transition(item, to=BreakStatus.ASSIGNED, actor=actor, text=f"Assigned to {assignee.get_username()}.")
    item.assignee_id = assignee.pk
    item.save(update_fields=["status", "assignee"])
    return item


@transaction.atomic
def break_comment(*, break_id: int, text: str, actor: Actor) -> BreakComment:
    """Add a note to a break's history, in any status."""
    text = COMMENT_TEXT.require(text, field="text")
    if not text:
        raise ApplicationError("Write a comment.", field="text")
    item = _locked(break_id)
    return BreakComment.objects.create(
        reconciliation_break=item, author_id=actor.pk if actor is not None else None, text=text
    )


@transaction.atomic
def break_resolve(*, break_id: int, resolution: str, actor: Actor) -> Break:
    """Close a break, saying how it was resolved. Resolving a resolved break again is a no-op."""
    resolution = RESOLUTION_TEXT.require(resolution, field="resolution")
    if not resolution:
        raise ApplicationError("Say how the break was resolved.", field="resolution")
    item = _locked(break_id)
    if item.status == BreakStatus.RESOLVED:
        return item
    _transition(item, to=BreakStatus.RESOLVED, actor=actor, text=f"Resolved: {resolution}")
    item.resolution, item.resolved_at = resolution, timezone.now()
    item.resolved_by_id = actor.pk if actor is not None else None
    item.save(update_fields=["status", "resolution", "resolved_at", "resolved_by"])
    return item
