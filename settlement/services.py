"""Ledger writes: fund a customer, post a trade's settlement (delivery versus payment), and the
movements staff post by hand (deposits, withdrawals, journals between customers).

Every posting is written in one transaction and balances per asset; the database refuses an
unbalanced posting at commit and a second posting of the same trade leg at insert.

Locks: these functions run inside the caller's transaction, late in the global lock order documented
in orders/services.py (customer -> books -> orders -> children -> trades -> executions -> ledger ->
reservations). Ledger rows are only inserted; accounts are never locked, only referenced (FOR KEY SHARE
through the foreign key) and, the first time, created in one sorted batch, so two first postings cannot
wait for each other's new accounts. The one writer of an account row is `ledger_fold`, in a transaction
of its own that takes no other lock (its FOR NO KEY UPDATE does not conflict with FOR KEY SHARE).
Reservations are updated with plain UPDATEs (FOR NO KEY UPDATE on the row), after the ledger and, when
there are several, by order id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from broker.models import Customer
from broker.sql import CompiledQuery
from settlement.models import (
    CASH_ASSET,
    Account,
    AccountKind,
    LedgerEntry,
    LedgerFold,
    Leg,
    Posting,
    PostingPurpose,
)

CENT = Decimal("0.01")

AccountKey = tuple[str, int | None, int | None, str]  # kind, customer id, pool id, asset


# Compiled once per process (broker.sql.CompiledQuery): every settlement batch runs it.
_ACCOUNTS = CompiledQuery(
    lambda shape, customers, assets: Account.objects.filter(
        Q(customer_id__any=customers) | Q(customer__isnull=True), asset__any=assets
    )
)


def _accounts(keys: Iterable[AccountKey]) -> dict[AccountKey, Account]:
    """Fetch (creating the missing ones) the accounts for `keys` in two or three queries."""
    wanted = set(keys)

    def fetch() -> dict[AccountKey, Account]:
        # The accounts of these customers and of the house in these assets (a few more than wanted, the
        # others' kinds), picked out here: one OR'ed condition per key cost the ORM more CPU to compile
        # for a settlement batch (~500 keys) than everything else the batch did.
        customers = sorted({customer for _, customer, _, _ in wanted if customer is not None})
        assets = sorted({asset for _, _, _, asset in wanted})
        found = _ACCOUNTS.objects(customers=customers, assets=assets)
        return {key: a for a in found if (key := (a.kind, a.customer_id, a.pool_id, a.asset)) in wanted}

    accounts = fetch()
    missing = wanted - set(accounts)
    if missing:
        # Concurrent creators race on the unique constraint; ignore_conflicts lets both continue. Each
        # waits for the other's uncommitted row, so both insert in one (key) order: no deadlock. (A
        # set's order is not stable across worker processes: string hashing is salted per process.)
        Account.objects.bulk_create(
            [
                Account(kind=kind, customer_id=customer, pool_id=pool, asset=asset)
                for kind, customer, pool, asset in sorted(missing, key=_account_sort_key)
            ],
            ignore_conflicts=True,
        )
        accounts = fetch()
    return accounts


def _account_sort_key(key: AccountKey) -> tuple[str, int, int, str]:
    kind, customer_id, pool_id, asset = key
    return kind, customer_id or 0, pool_id or 0, asset


def _post(*, posting: Posting, lines: list[tuple[Account, str, Decimal]]) -> None:
    LedgerEntry.objects.bulk_create(_entries(posting=posting, lines=lines))


def _entries(*, posting: Posting, lines: list[tuple[Account, str, Decimal]]) -> list[LedgerEntry]:
    """The posting's non-zero lines. A zero line is left out (the database refuses zero entries): a
    trade whose notional rounds to 0.00 (one share at 0.0001) posts no cash leg, one without a fee no
    fee leg; each leg still balances on its own, and readers treat a missing leg as zero."""
    return [
        LedgerEntry(
            posting=posting,
            account=account,
            asset=account.asset,
            amount=amount,
            leg=leg,
            purpose=posting.purpose,
            trade_ref=posting.trade_ref,
            trade_version=posting.trade_version,
        )
        for account, leg, amount in lines
        if amount != 0
    ]


@transaction.atomic
def customer_fund_initial(*, customer: Customer) -> Posting | None:
    """Credit the customer's initial funds to its cash account, once. Returns None on replay."""
    if customer.initial_funds <= 0:
        return None
    try:
        with transaction.atomic():
            posting = Posting.objects.create(
                purpose=PostingPurpose.INITIAL_FUNDING, customer=customer, description="initial funds"
            )
    except IntegrityError:
        return None  # already funded
    accounts = _accounts(
        [
            (AccountKind.CUSTOMER_CASH, customer.pk, None, CASH_ASSET),
            (AccountKind.CLIENT_FUNDING, None, None, CASH_ASSET),
        ]
    )
    _post(
        posting=posting,
        lines=[
            (accounts[(AccountKind.CUSTOMER_CASH, customer.pk, None, CASH_ASSET)], Leg.FUNDING, customer.initial_funds),
            (accounts[(AccountKind.CLIENT_FUNDING, None, None, CASH_ASSET)], Leg.FUNDING, -customer.initial_funds),
        ],
    )
    return posting


@transaction.atomic
def customer_transfer_in(
    *, customer: Customer, symbol: str, quantity: int, unit_cost: Decimal, reference: str
) -> Posting | None:
    """Deliver shares into the customer's account from outside (a portfolio transfer), once per reference.

    The house counterpart is the client-funding account of that asset, so the ledger still sums to zero.
    """
    if quantity <= 0:
        raise ValueError("a transfer moves a positive number of shares")
    try:
        with transaction.atomic():
            posting = Posting.objects.create(
                purpose=PostingPurpose.SECURITIES_TRANSFER_IN,
                customer=customer,
                reference=reference,
                unit_cost=unit_cost,
                description=f"transfer in {quantity} {symbol} at cost {unit_cost}",
            )
    except IntegrityError:
        return None
    keys = [
        (AccountKind.CUSTOMER_SECURITIES, customer.pk, None, symbol),
        (AccountKind.CLIENT_FUNDING, None, None, symbol),
    ]
    accounts = _accounts(keys)
    _post(
        posting=posting,
        lines=[
            (accounts[keys[0]], Leg.FUNDING, Decimal(quantity)),
            (accounts[keys[1]], Leg.FUNDING, -Decimal(quantity)),
        ],
    )
    return posting


@dataclass(frozen=True, slots=True)
class Movement:
    """A cash deposit or withdrawal, or a journal, as staff post it by hand (`movement_post`)."""

    purpose: str  # CashDeposit | CashWithdrawal | Journal
    customer_id: int  # the customer the money or shares come from (a deposit: the one it goes to)
    asset: str  # "USD", or a ticker symbol (journals only)
    amount: Decimal  # positive: cash to the cent, shares whole
    reason: str
    actor: str
    counterparty_id: int | None = None  # a journal's receiving customer
    reference: str = ""  # the caller's id for the movement: posting it again returns the first posting


@dataclass(frozen=True, slots=True)
class Posted:
    posting: Posting
    replayed: bool  # the reference was posted before; nothing new was written


def movement_post(movement: Movement) -> Posted:
    """Post a deposit, a withdrawal or a journal between two customers, refusing (409) one that would
    take more than the paying customer has available (its balance less what open orders hold).

    The customers' rows are locked first, in id order (the head of the global lock order, as an order
    entry takes its customer's), so the availability read here cannot be spent twice by a concurrent
    order, withdrawal or journal. Idempotent per `reference`.
    """
    from broker.exceptions import Conflict

    with transaction.atomic():
        if movement.reference and (found := _posted(movement)) is not None:
            return Posted(posting=found, replayed=True)
        party_ids = sorted({movement.customer_id, movement.counterparty_id or movement.customer_id})
        locked = list(Customer.objects.select_for_update(no_key=True).filter(pk__in=party_ids).order_by("pk"))
        if len(locked) != len(party_ids):
            raise Conflict("The customer no longer exists.", field="customerId")
        paying = None if movement.purpose == PostingPurpose.CASH_DEPOSIT else movement.customer_id
        unit_cost = None
        if paying is not None:
            have = available(customer_id=paying, asset=movement.asset)
            if have < movement.amount:
                shown = f"{have.quantize(CENT)}" if movement.asset == CASH_ASSET else f"{have.normalize():f}"
                raise Conflict(
                    f"Refused: it would leave the account negative ({shown} {movement.asset} available, "
                    f"{movement.amount} needed).",
                    field="amount",
                )
        if movement.asset != CASH_ASSET:
            # The shares keep their cost: the receiver takes them at the sender's average cost, and the
            # sender gives them up at it (no P&L is realized by moving shares between accounts).
            from settlement.selectors import holdings

            held = holdings(customer_id=movement.customer_id).get(movement.asset)
            unit_cost = held.average_cost if held is not None else None
        try:
            with transaction.atomic():
                posting = Posting.objects.create(
                    purpose=movement.purpose,
                    customer_id=movement.customer_id,
                    counterparty_id=movement.counterparty_id,
                    reference=movement.reference,
                    unit_cost=unit_cost,
                    actor=movement.actor,
                    description=movement.reason,
                )
        except IntegrityError:
            # The same reference committed by a concurrent call while this one waited for the locks.
            found = _posted(movement)
            if found is None:
                raise
            return Posted(posting=found, replayed=True)
        _post(posting=posting, lines=_movement_lines(movement))
        return Posted(posting=posting, replayed=False)


def _posted(movement: Movement) -> Posting | None:
    return Posting.objects.filter(purpose=movement.purpose, reference=movement.reference).first()


def _movement_lines(movement: Movement) -> list[tuple[Account, str, Decimal]]:
    cash = movement.asset == CASH_ASSET
    kind = AccountKind.CUSTOMER_CASH if cash else AccountKind.CUSTOMER_SECURITIES
    own: AccountKey = (kind, movement.customer_id, None, movement.asset)
    if movement.purpose == PostingPurpose.JOURNAL:
        assert movement.counterparty_id is not None
        other: AccountKey = (kind, movement.counterparty_id, None, movement.asset)
        leg = Leg.JOURNAL
    else:
        other = (AccountKind.CLIENT_FUNDING, None, None, movement.asset)
        leg = Leg.FUNDING
    accounts = _accounts([own, other])
    sign = 1 if movement.purpose == PostingPurpose.CASH_DEPOSIT else -1
    return [(accounts[own], leg, sign * movement.amount), (accounts[other], leg, -sign * movement.amount)]


@dataclass(frozen=True, slots=True)
class TradeToSettle:
    """What the ledger needs to know of a broker trade (settlement never imports orders)."""

    trade_ref: int
    customer_id: int
    pool_id: int
    symbol: str
    direction: str  # "Buy" | "Sell"
    quantity: int
    price: Decimal
    fee: Decimal
    version: int = 1

    @property
    def notional(self) -> Decimal:
        return (self.price * self.quantity).quantize(CENT, rounding=ROUND_HALF_UP)


def trade_post(*, trade: TradeToSettle) -> Posting | None:
    """Post both legs of a trade in one transaction (delivery versus payment), plus its fee.

    Buy: cash goes from the customer to the venue's clearing account, shares the other way; a sell is
    the mirror image. Idempotent: a second call for the same trade version returns None and posts
    nothing (the unique constraint arbitrates concurrent calls). Caller holds the trade's row lock
    (settlement, corrections), so only one transaction posts a trade at a time.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                posting = Posting.objects.create(
                    purpose=PostingPurpose.TRADE_SETTLEMENT,
                    customer_id=trade.customer_id,
                    trade_ref=trade.trade_ref,
                    trade_version=trade.version,
                    description=f"{trade.direction} {trade.quantity} {trade.symbol} @ {trade.price}",
                )
        except IntegrityError:
            return None
        keys = _trade_account_keys(trade)
        _post(posting=posting, lines=_trade_lines(trade, keys, _accounts(keys.values())))
        return posting


def trades_post(trades: list[TradeToSettle]) -> list[Posting]:
    """Post many trades at once (one posting each, as `trade_post`), in a handful of statements.

    Caller holds every trade's row lock and knows none of these trade versions is posted yet (they are
    unsettled); the unique constraints would refuse a second posting anyway, failing the whole batch.
    """
    if not trades:
        return []
    postings = Posting.objects.bulk_create(
        [
            Posting(
                purpose=PostingPurpose.TRADE_SETTLEMENT,
                customer_id=trade.customer_id,
                trade_ref=trade.trade_ref,
                trade_version=trade.version,
                description=f"{trade.direction} {trade.quantity} {trade.symbol} @ {trade.price}",
            )
            for trade in trades
        ],
    )
    keys_of = [_trade_account_keys(trade) for trade in trades]
    accounts = _accounts(key for keys in keys_of for key in keys.values())
    entries: list[LedgerEntry] = []
    for trade, posting, keys in zip(trades, postings, keys_of, strict=True):
        entries.extend(_entries(posting=posting, lines=_trade_lines(trade, keys, accounts)))
    LedgerEntry.objects.bulk_create(entries)
    return postings


def _trade_account_keys(trade: TradeToSettle) -> dict[str, AccountKey]:
    return {
        "cash": (AccountKind.CUSTOMER_CASH, trade.customer_id, None, CASH_ASSET),
        "shares": (AccountKind.CUSTOMER_SECURITIES, trade.customer_id, None, trade.symbol),
        "venue_cash": (AccountKind.VENUE_CLEARING, None, trade.pool_id, CASH_ASSET),
        "venue_shares": (AccountKind.VENUE_CLEARING, None, trade.pool_id, trade.symbol),
        "fees": (AccountKind.FEE_INCOME, None, None, CASH_ASSET),
    }


def _trade_lines(
    trade: TradeToSettle, keys: dict[str, AccountKey], accounts: dict[AccountKey, Account]
) -> list[tuple[Account, str, Decimal]]:
    """Delivery versus payment: a buy moves cash to the venue and shares to the customer; a sell the
    other way; the fee goes from the customer's cash to fee income."""
    sign = 1 if trade.direction == "Buy" else -1
    notional, shares = trade.notional, Decimal(trade.quantity)
    return [
        (accounts[keys["cash"]], Leg.CASH, -sign * notional),
        (accounts[keys["venue_cash"]], Leg.CASH, sign * notional),
        (accounts[keys["shares"]], Leg.SECURITIES, sign * shares),
        (accounts[keys["venue_shares"]], Leg.SECURITIES, -sign * shares),
        (accounts[keys["cash"]], Leg.FEE, -trade.fee),
        (accounts[keys["fees"]], Leg.FEE, trade.fee),
    ]


def settlement_today() -> date:
    """Today's date in New York, the calendar settlement dates are counted in."""
    import zoneinfo

    from django.utils import timezone

    return timezone.now().astimezone(zoneinfo.ZoneInfo("America/New_York")).date()


def settlement_due_on(*, traded_at: datetime) -> date:
    """The date a trade settles: its trade date (T+0) or the next XNYS business day (T+1).

    The trade date is the New York date of the execution; T+1 skips weekends and exchange holidays.
    """
    import zoneinfo

    trade_day = traded_at.astimezone(zoneinfo.ZoneInfo("America/New_York")).date()
    if settings.SETTLEMENT_CYCLE == "T+0":
        return trade_day
    import exchange_calendars
    import pandas

    calendar = exchange_calendars.get_calendar("XNYS")
    day = pandas.Timestamp(trade_day)
    # A trade on a non-session day (the simulation trades around the clock) belongs to the next session.
    session = day if calendar.is_session(day) else calendar.date_to_session(day, direction="next")
    return calendar.next_session(session).date()


# --- pre-trade risk: reservations ------------------------------------------------------------------

# Per share, on top of the limit and the highest fee rate: each trade rounds its notional and its fee
# half-up to the cent, so each can exceed the exact amount by at most half a cent. One cent per share
# therefore covers any sequence of fills (every fill is at least one share).
ROUNDING_BUFFER_PER_SHARE = Decimal("0.01")


def trade_cost(*, direction: str, quantity: int, price: Decimal, fee: Decimal) -> Decimal:
    """What a trade takes from its reservation: cash (notional + fee) for a buy, shares for a sell."""
    if direction == "Buy":
        return (price * quantity).quantize(CENT, rounding=ROUND_HALF_UP) + fee
    return Decimal(quantity)


def _available_sql(*, customer_id: int, asset: str) -> tuple[str, list[Any]]:
    """SQL of the customer's available `asset`: its ledger balance less what its reservations hold.

    The balance is the account's folded sum plus its entries after `folded_upto` (`ledger_fold`): a
    read of a few index rows, where a sum over the account's whole history grew with every trade of the
    day (97 index rows an order after 20 s at 100 orders/s, docs/performance.md).
    """
    from settlement.models import Reservation

    kind = AccountKind.CUSTOMER_CASH if asset == CASH_ASSET else AccountKind.CUSTOMER_SECURITIES
    entry, account, reservation = (model._meta.db_table for model in (LedgerEntry, Account, Reservation))
    sql = f"""
        COALESCE((SELECT a.folded_balance + COALESCE(
              (SELECT SUM(e.amount) FROM {entry} e WHERE e.account_id = a.id AND e.id > a.folded_upto), 0)
            FROM {account} a WHERE a.kind = %s AND a.customer_id = %s AND a.pool_id IS NULL AND a.asset = %s), 0)
        - (SELECT COALESCE(SUM(r.per_unit * r.open_units + r.pending), 0) FROM {reservation} r
          WHERE r.customer_id = %s AND r.asset = %s AND (r.open_units > 0 OR NOT (r.pending = 0)))
    """  # noqa: S608  (only the tables' own names go into the text)
    return sql, [kind, customer_id, asset, customer_id, asset]


def available(*, customer_id: int, asset: str) -> Decimal:
    """Ledger balance of `asset` less everything the customer's reservations still hold (one query)."""
    sql, params = _available_sql(customer_id=customer_id, asset=asset)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        (value,) = cursor.fetchone()
    return Decimal(value)


@dataclass(frozen=True, slots=True)
class RiskCheck:
    accepted: bool
    reason: str = ""


def reservation_open(
    *, order_ref: int, customer_id: int, direction: str, symbol: str, quantity: int, per_share_price: Decimal
) -> RiskCheck:
    """Reserve what a new order needs, or refuse it. Caller holds the customer's row lock.

    A buy reserves `per_share_price` (its limit, or a Market order's protection price) plus the
    highest fee rate of any venue plus the rounding buffer, per share; a sell reserves the shares.
    Only settled holdings and cash count: no shorting and no spending of unsettled proceeds.
    """
    from pools import selectors as pool_selectors
    from settlement.models import Reservation

    if direction == "Buy":
        fee_rate = pool_selectors.max_fee_rate()
        asset, per_unit = CASH_ASSET, per_share_price + fee_rate + ROUNDING_BUFFER_PER_SHARE
        needed, reason = per_unit * quantity, "insufficient funds"
    else:
        asset, per_unit = symbol, Decimal(1)
        needed, reason = Decimal(quantity), "insufficient position"
    # Check and reserve in one statement (this runs on every order placement): the row is inserted only
    # if what is available covers it. The caller's customer lock was taken by an earlier statement, so
    # this one's snapshot sees every reservation of the customer's earlier placements.
    available_sql, available_params = _available_sql(customer_id=customer_id, asset=asset)
    table = Reservation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (order_ref, customer_id, asset, per_unit, units, open_units, pending, created_at,
                                 updated_at)
            SELECT %s, %s, %s, %s, %s, %s, 0, now(), now()
            WHERE {available_sql} >= %s
            RETURNING id
            """,
            [order_ref, customer_id, asset, per_unit, quantity, quantity, *available_params, needed],
        )
        if cursor.fetchone() is not None:
            return RiskCheck(accepted=True)
    have = available(customer_id=customer_id, asset=asset)
    shown = (
        f"{have.quantize(CENT)} available, {needed.quantize(CENT)} needed"
        if asset == CASH_ASSET
        else (f"{have.normalize():f} {symbol} available, {quantity} needed")
    )
    return RiskCheck(accepted=False, reason=f"{reason}: {shown}")


def reservation_fill(*, order_ref: int, quantity: int, cost: Decimal) -> None:
    """A fill turns `quantity` open units into `cost` pending settlement.

    Caller holds the order's lock (FOR NO KEY UPDATE) and, for several orders, calls this by order id.
    """
    from django.db.models import F

    from settlement.models import Reservation

    Reservation.objects.filter(order_ref=order_ref).update(
        open_units=F("open_units") - quantity, pending=F("pending") + cost
    )


@dataclass(frozen=True, slots=True)
class ReservationChange:
    """What a batch of fills does to one order's reservation."""

    filled: int = 0  # open units that filled
    cost: Decimal = Decimal(0)  # what those fills cost: pending until they settle
    close: bool = False  # the order is finished: release every open unit left


def reservations_apply(changes: dict[int, ReservationChange]) -> None:
    """Apply fills (and closes) to many orders' reservations in one statement, by order id.

    Caller holds every one of these orders' locks (FOR NO KEY UPDATE). The rows are locked in order id
    order inside the statement (the global lock order), so a concurrent batch of settlements, which
    locks its reservations the same way, cannot deadlock with it.
    """
    if not changes:
        return
    from settlement.models import Reservation

    table = Reservation._meta.db_table
    refs = sorted(changes)
    values = ", ".join(["(%s::bigint, %s::integer, %s::numeric, %s::boolean)"] * len(refs))
    params: list[Any] = []
    for ref in refs:
        change = changes[ref]
        params += [ref, change.filled, change.cost, change.close]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS r
            SET open_units = CASE WHEN v.close THEN 0 ELSE r.open_units - v.filled END,
                pending = r.pending + v.cost,
                updated_at = now()
            FROM (SELECT id FROM {table} WHERE order_ref = ANY(%s) ORDER BY order_ref FOR NO KEY UPDATE) AS locked,
                 (VALUES {values}) AS v (ref, filled, cost, close)
            WHERE r.id = locked.id AND r.order_ref = v.ref
            """,  # noqa: S608  (only the table's own name and placeholders go into the text)
            [refs, *params],
        )


def reservations_settle(costs: dict[int, Decimal]) -> None:
    """Trades were posted to the ledger: their costs are no longer pending (order ref -> total cost).

    Same transaction as the postings; the caller holds the trades' locks (not the orders'). Rows are
    locked by order id, as `reservations_apply` does.
    """
    if not costs:
        return
    reservations_apply({ref: ReservationChange(cost=-cost) for ref, cost in costs.items()})


def reservation_close(*, order_ref: int) -> None:
    """The order is finished: release what was held for its unfilled quantity (fills stay pending).

    Caller holds the order's lock (FOR NO KEY UPDATE).
    """
    from settlement.models import Reservation

    Reservation.objects.filter(order_ref=order_ref, open_units__gt=0).update(open_units=0)


def reservation_settle(*, order_ref: int, cost: Decimal) -> None:
    """A trade was posted to the ledger: its cost is no longer pending. Same transaction as the posting.

    Caller holds the trade's lock (not the order's: settlement locks no order) and posted it first.
    """
    from django.db.models import F

    from settlement.models import Reservation

    Reservation.objects.filter(order_ref=order_ref).update(pending=F("pending") - cost)


def trade_reverse(*, trade_ref: int, version: int) -> Posting | None:
    """Post the exact negation of a trade version's settlement posting (a correction or bust).

    Idempotent: the reversal of a version can be posted once. Returns None if there was nothing posted
    for that version or it is already reversed. Caller holds the trade's row lock.
    """
    original = Posting.objects.filter(
        trade_ref=trade_ref, trade_version=version, purpose=PostingPurpose.TRADE_SETTLEMENT
    ).first()
    if original is None:
        return None
    with transaction.atomic():
        try:
            with transaction.atomic():
                reversal = Posting.objects.create(
                    purpose=PostingPurpose.TRADE_REVERSAL,
                    customer_id=original.customer_id,
                    trade_ref=trade_ref,
                    trade_version=version,
                    description=f"reversal of {original.description}",
                )
        except IntegrityError:
            return None
        lines = [(entry.account, entry.leg, -entry.amount) for entry in original.entries.select_related("account")]
        _post(posting=reversal, lines=lines)
        return reversal


def reservation_adjust(*, order_ref: int, pending_change: Decimal) -> None:
    """A correction changed the cost of a fill that has not settled yet.

    Caller holds the order's and the trade's locks, has written the ledger first, and adjusts several
    orders by order id.
    """
    from django.db.models import F

    from settlement.models import Reservation

    Reservation.objects.filter(order_ref=order_ref).update(pending=F("pending") + pending_change)


# --- folded balances ------------------------------------------------------------------------------

# pg_try_advisory_xact_lock key of a fold: two folds never run at once (the second one skips its turn).
# Every advisory lock key of the project is distinct (tests/test_advisory_locks.py).
FOLD_LOCK = 7_211_015


@dataclass(frozen=True, slots=True)
class Fold:
    upto: int  # every entry with id <= upto is folded into its account
    accounts: int  # accounts this pass changed
    entries: int  # entries this pass folded


def ledger_fold() -> Fold | None:
    """Fold the ledger entries that can no longer change into their accounts' `folded_balance`; None
    when another fold is running. Idempotent; runs after each settlement (the ledger's writer) and in
    the sweep. Takes no lock but the accounts it updates and its own advisory lock, so it waits for no
    writer of the order flow, and none waits for it (see the module's lock note).

    An entry id is taken when its row is inserted, not when its transaction commits: a transaction
    holding id 9 may commit after the one holding id 10, so "every entry up to the newest id I can see"
    may miss one. A pass therefore notes the newest entry id (`next_upto`), then, in a later statement,
    the first transaction id not yet started (`next_xid`); a later pass folds up to `next_upto` once
    every transaction below `next_xid` has ended. Every transaction that wrote an entry up to
    `next_upto` had its transaction id when it took that entry's id (a posting's entries are inserted
    after the posting itself, and the first row a transaction writes gives it its id), so it is below
    `next_xid`: it has committed, and its entries are seen, or rolled back, and they never will be.
    """
    entry = LedgerEntry._meta.db_table
    account = Account._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [FOLD_LOCK])
        if not cursor.fetchone()[0]:
            return None
        state = LedgerFold.objects.filter(pk=1).first() or LedgerFold(pk=1)
        accounts = entries = 0
        if state.next_upto is not None and state.next_xid is not None:
            cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            if cursor.fetchone()[0] >= state.next_xid:
                # Per account from its own folded_upto, not from the fold's: a pass is never applied
                # twice to an account, whatever happened to the fold's row.
                cursor.execute(
                    f"""
                    WITH due AS (
                        SELECT e.account_id, SUM(e.amount) AS amount, COUNT(*) AS entries
                        FROM {entry} e JOIN {account} a ON a.id = e.account_id
                        WHERE e.id > %s AND e.id <= %s AND e.id > a.folded_upto
                        GROUP BY e.account_id
                    ), folded AS (
                        UPDATE {account} a SET folded_balance = a.folded_balance + due.amount, folded_upto = %s
                        FROM due WHERE a.id = due.account_id
                        RETURNING due.entries
                    )
                    SELECT COUNT(*), COALESCE(SUM(entries), 0) FROM folded
                    """,  # noqa: S608  (only the tables' own names go into the text)
                    [state.upto, state.next_upto, state.next_upto],
                )
                accounts, entries = cursor.fetchone()
                state.upto, state.next_upto, state.next_xid = state.next_upto, None, None
                state.folded_at = timezone.now()
        if state.next_upto is None:
            # The newest id first, then (a later statement, so a later snapshot) the first transaction
            # id not yet started: every writer of an id up to the first has an id below the second.
            cursor.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id'))", [entry])
            newest = cursor.fetchone()[0]
            if newest is not None and newest > state.upto:
                cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                state.next_upto, state.next_xid = newest, cursor.fetchone()[0]
        state.save()
    return Fold(upto=state.upto, accounts=accounts, entries=entries)
