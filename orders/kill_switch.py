"""The kill switch: halt everything, a pool, a ticker or a customer, and ask whether an order is halted.

`halt_set` is the only writer of `Halt` and `HaltEvent` (the admin and the staff API call it).
`halts_active` is read on every order placement, routing and batch of matches, so it is one small query.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from broker.cache import shared_cache
from broker.exceptions import ApplicationError
from broker.models import Customer, Ticker
from broker.text import FREE_TEXT_MAX_LENGTH, Text
from orders.models import HALT_TARGET_FIELDS, Halt, HaltEvent, HaltScope, Order
from pools.models import Pool

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | str | None

# Broadest first: when several active halts cover an order, the reason names the broadest.
SCOPE_PRECEDENCE = [HaltScope.ALL, HaltScope.POOL, HaltScope.TICKER, HaltScope.CUSTOMER]
# A reason ends up in Order.reject_reason, so it must fit there.
REASON_MAX_LENGTH = Order._meta.get_field("reject_reason").max_length or 200
# The reason is one line of free text (a TextField; it is quoted, cut to fit, in reject reasons); the
# target is a pool name, a ticker symbol or a customer id, as long as the longest of them.
REASON_TEXT = Text(max_length=FREE_TEXT_MAX_LENGTH)
TARGET_TEXT = Text(
    max_length=max(
        Text.of(model, name).max_length
        for model, name in [(Pool, "name"), (Ticker, "symbol"), (Customer, "customer_id")]
    )
)

_TARGET_MODELS: dict[str, type[Pool] | type[Ticker] | type[Customer]] = {
    HaltScope.POOL: Pool,
    HaltScope.TICKER: Ticker,
    HaltScope.CUSTOMER: Customer,
}


def _actor_name(actor: Actor) -> str:
    if isinstance(actor, str):
        return actor
    if actor is None or not actor.is_authenticated:
        return "system"
    return actor.get_username()


# --- writes ------------------------------------------------------------------------------------------


def halt_validate(*, scope: str, target_id: int | None, active: bool, reason: str) -> None:
    """Refuse a toggle the kill switch cannot take, naming the field (`scope`, `target`, `reason`).

    `halt_set` calls it first; the admin form calls it too, to show the same errors next to its fields.
    """
    if scope not in HaltScope.values:
        raise ApplicationError(f"Unknown scope {scope!r}; use All, Pool, Ticker or Customer.", field="scope")
    target_model = _TARGET_MODELS.get(scope)
    if target_model is None and target_id is not None:
        raise ApplicationError("A halt of everything has no target; leave it null.", field="target")
    if target_model is not None:
        if target_id is None:
            raise ApplicationError(f"A {scope} halt needs a target.", field="target")
        if not target_model.objects.filter(pk=target_id).exists():
            raise ApplicationError(f"Unknown {scope.lower()} {target_id}.", field="target")
    REASON_TEXT.require(reason, field="reason")
    if active and not reason.strip():
        raise ApplicationError("Say why trading is halted.", field="reason")


@transaction.atomic
def halt_set(*, scope: str, target_id: int | None, active: bool, reason: str, actor: Actor) -> Halt:
    """Halt (`active=True`) or release one scope target, and record who, when and why.

    The target's `Halt` row is created on first use and then locked (SELECT FOR UPDATE), so concurrent
    toggles of one target serialize. Asking for the state it already has is a no-op on the row, but the
    request is still recorded as a `HaltEvent` with its reason.
    """
    reason = REASON_TEXT.require(reason, field="reason")  # checked as sent, before stripping hides a newline
    halt_validate(scope=scope, target_id=target_id, active=active, reason=reason)
    target: dict[str, int | None] = {f"{field_name}_id": None for field_name in HALT_TARGET_FIELDS.values()}
    if scope in HALT_TARGET_FIELDS:
        target[f"{HALT_TARGET_FIELDS[scope]}_id"] = target_id
    actor_name = _actor_name(actor)
    # INSERT ... ON CONFLICT DO NOTHING, then lock: a concurrent first toggle cannot fail on the unique key.
    Halt.objects.bulk_create([Halt(scope=scope, **target, changed_by=actor_name)], ignore_conflicts=True)
    halt = (
        Halt.objects.select_for_update(of=("self",), no_key=True)
        .select_related("pool", "ticker", "customer")
        .get(scope=scope, **target)
    )
    if halt.active != active:
        halt.active = active
        halt.reason = reason
        halt.changed_by = actor_name
        halt.changed_at = timezone.now()
        halt.save(update_fields=["active", "reason", "changed_by", "changed_at"])
        logger.warning("kill switch: %s by %s: %s", halt, actor_name, reason)
        if not active:
            # What the halt held was backed off by the sweeper meanwhile: send it again now, not up to a
            # minute later.
            transaction.on_commit(_released, robust=True)
    HaltEvent.objects.create(halt=halt, active=active, reason=reason, actor=actor_name)
    # Now, and again once committed: no process keeps a snapshot read in between (see `halts_cached`).
    _halts_changed()
    transaction.on_commit(_halts_changed, robust=True)
    return halt


def _released() -> None:
    from orders import services, tasks

    services.sweep_backoff_reset()
    tasks.sweep.apply_async()


# --- reads -------------------------------------------------------------------------------------------


def halts() -> QuerySet[Halt]:
    """Every configured halt, active or released, with its target loaded."""
    return Halt.objects.select_related("pool", "ticker", "customer").order_by("scope", "id")


def halt_target_id(*, scope: str, target: str | None) -> int | None:
    """The primary key of a target as clients name it (pool name, ticker symbol, customerId)."""
    if scope not in HaltScope.values:
        raise ApplicationError(f"Unknown scope {scope!r}; use All, Pool, Ticker or Customer.", field="scope")
    if scope == HaltScope.ALL:
        if target is not None:
            raise ApplicationError("A halt of everything has no target; leave it null.", field="target")
        return None
    if target is None or not target.strip():
        raise ApplicationError(f"A {scope} halt needs a target.", field="target")
    target = TARGET_TEXT.require(target, field="target")
    lookups: dict[str, QuerySet[Pool] | QuerySet[Ticker] | QuerySet[Customer]] = {
        HaltScope.POOL: Pool.objects.filter(name=target),
        HaltScope.TICKER: Ticker.objects.filter(symbol=target),
        HaltScope.CUSTOMER: Customer.objects.filter(customer_id=target),
    }
    primary_key = lookups[scope].values_list("pk", flat=True).first()
    if primary_key is None:
        raise ApplicationError(f"Unknown {scope.lower()} {target!r}.", field="target")
    return primary_key


def _describe(halt: Halt) -> str:
    if halt.scope == HaltScope.ALL:
        text = f"all trading halted: {halt.reason}"
    elif halt.scope == HaltScope.POOL:
        text = f"trading halted on pool {halt.target}: {halt.reason}"
    else:
        text = f"trading halted for {halt.scope.lower()} {halt.target}: {halt.reason}"
    return text if len(text) <= REASON_MAX_LENGTH else text[: REASON_MAX_LENGTH - 1] + "…"


_ANY_ACTIVE_SQL = f"SELECT EXISTS (SELECT 1 FROM {Halt._meta.db_table} WHERE active)"  # noqa: S608  (a constant)


@dataclass(frozen=True, slots=True)
class HaltSnapshot:
    """Every active halt, read in one query: what a routing or matching decision asks of the kill switch.

    Read it once per decision (or per batch of matches, under the book lock), never cache it across
    transactions: a halt takes effect for the very next decision.
    """

    active: tuple[Halt, ...]

    def reason(self, *, customer_id: int, ticker_id: int, pool_id: int | None = None) -> str | None:
        """Why an order of this customer in this ticker (at this pool, if given) must not trade; None if free."""
        covering = [
            halt
            for halt in self.active
            if halt.scope == HaltScope.ALL
            or (halt.scope == HaltScope.CUSTOMER and halt.customer_id == customer_id)
            or (halt.scope == HaltScope.TICKER and halt.ticker_id == ticker_id)
            or (pool_id is not None and halt.scope == HaltScope.POOL and halt.pool_id == pool_id)
        ]
        if not covering:
            return None
        return _describe(min(covering, key=lambda halt: (SCOPE_PRECEDENCE.index(HaltScope(halt.scope)), halt.pk)))

    @property
    def halted_pool_ids(self) -> set[int]:
        """Pools with an active Pool halt. A halt of everything is not listed here: `reason` reports it."""
        return {halt.pool_id for halt in self.active if halt.scope == HaltScope.POOL and halt.pool_id is not None}


NO_HALTS = HaltSnapshot(active=())


def halts_active() -> HaltSnapshot:
    """The active halts now: usually none, which one constant statement answers (every batch of matches
    asks, under its book lock, and compiling the query with its three joins cost more than running it);
    otherwise they are read with what their reasons name."""
    with connection.cursor() as cursor:
        cursor.execute(_ANY_ACTIVE_SQL)
        (any_active,) = cursor.fetchone()
    if not any_active:
        return NO_HALTS
    return HaltSnapshot(active=tuple(Halt.objects.filter(active=True).select_related("pool", "ticker", "customer")))


HALTS_VERSION_KEY = "orders:halts-version"
_cached: tuple[str, HaltSnapshot] | None = None
# Set when this process changed a halt in a transaction still open: until it ends (committed or rolled
# back), what this process reads may include its own uncommitted change, which must not be cached.
_dirty = False


def halts_cached() -> HaltSnapshot:
    """The active halts as of the last change this process heard of: for the gateway and the router.

    Checked against a version in the shared cache (Redis) that every `halt_set` bumps when it writes and
    again when it commits, so a halt reaches every process's next order. It may miss a halt committed
    within that moment; matching, the gate to trading, always reads `halts_active` under its book lock,
    so no trade happens after a halt commits. Without the shared cache it reads the database.
    """
    global _cached, _dirty
    if _dirty:
        if connection.in_atomic_block:
            return halts_active()
        _dirty, _cached = False, None
    try:
        version = shared_cache().get(HALTS_VERSION_KEY)
        if version is None:
            shared_cache().add(HALTS_VERSION_KEY, uuid.uuid4().hex, timeout=None)
            version = shared_cache().get(HALTS_VERSION_KEY)
    except Exception:
        logger.warning("halt cache version unavailable; reading halts from the database", exc_info=True)
        return halts_active()
    if version is None:
        return halts_active()
    if _cached is None or _cached[0] != version:
        _cached = (version, halts_active())
    return _cached[1]


def _halts_changed() -> None:
    global _cached, _dirty
    _cached, _dirty = None, connection.in_atomic_block
    try:
        shared_cache().set(HALTS_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        logger.exception("could not bump the halt cache version; other processes rely on matching's own check")


def halt_reason(*, customer_id: int, ticker_id: int, pool_id: int | None = None) -> str | None:
    """Why an order of this customer in this ticker (at this pool, if given) must not trade; None if free.

    Ids are primary keys. One query: the active halts (`halts_active`).
    """
    return halts_active().reason(customer_id=customer_id, ticker_id=ticker_id, pool_id=pool_id)


def halted_pool_ids() -> set[int]:
    """Pools with an active Pool halt. A halt of everything is not listed here: `halt_reason` reports it."""
    return halts_active().halted_pool_ids
