"""The broker's side of an order: the parent, its child orders, the trades clients see, and the event log."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from broker.models import Customer, Ticker
from pools.models import Execution, Pool


class Direction(models.TextChoices):
    BUY = "Buy"
    SELL = "Sell"


class OrderType(models.TextChoices):
    LIMIT = "Limit"
    MARKET = "Market"


class TimeInForce(models.TextChoices):
    DAY = "Day", "Day"
    GTC = "GTC", "GTC (good till cancelled)"
    IOC = "IOC", "IOC (immediate or cancel)"
    FOK = "FOK", "FOK (fill or kill)"


class OrderStatus(models.TextChoices):
    NEW = "New"
    ROUTED = "Routed"
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    EXPIRED = "Expired"


FINAL_ORDER_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})

# The order pipeline as data: the one table `orders.services.transitions.transition` checks.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    # New -> Expired: a Day order held unrouted by a halt still expires at the close.
    OrderStatus.NEW: frozenset({OrderStatus.ROUTED, OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}),
    OrderStatus.ROUTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}


class ChildStatus(models.TextChoices):
    NEW = "New"  # created by the router, not yet at a venue
    ROUTED = "Routed"  # sent to `pool` (in flight or resting there)
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    EXPIRED = "Expired"


FINAL_CHILD_STATUSES = frozenset({ChildStatus.FILLED, ChildStatus.CANCELLED, ChildStatus.EXPIRED})

CHILD_TRANSITIONS: dict[str, frozenset[str]] = {
    ChildStatus.NEW: frozenset({ChildStatus.ROUTED, ChildStatus.CANCELLED}),
    ChildStatus.ROUTED: frozenset(
        {ChildStatus.PARTIALLY_FILLED, ChildStatus.FILLED, ChildStatus.CANCELLED, ChildStatus.EXPIRED}
    ),
    ChildStatus.PARTIALLY_FILLED: frozenset({ChildStatus.FILLED, ChildStatus.CANCELLED, ChildStatus.EXPIRED}),
    ChildStatus.FILLED: frozenset(),
    ChildStatus.CANCELLED: frozenset(),
    ChildStatus.EXPIRED: frozenset(),
}


class Order(models.Model):
    """A parent order as the customer entered it."""

    order_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Drawn by the INSERT itself (and returned by it): no separate round trip per order.
    sequence = models.BigIntegerField(
        unique=True,
        db_default=models.Func(models.Value("orders_gateway_sequence"), function="nextval"),
        help_text="Gateway sequence number, strictly increasing.",
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    ticker = models.ForeignKey(Ticker, on_delete=models.PROTECT, related_name="orders")
    direction = models.CharField(max_length=4, choices=Direction.choices)
    order_type = models.CharField(max_length=6, choices=OrderType.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    # Market orders only: the worst price they may trade at (reference price +- the collar). It is
    # what they reserve and the limit their slices carry to the venues.
    protection_price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.DAY)
    client_order_id = models.CharField(max_length=64, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=15, choices=OrderStatus.choices, default=OrderStatus.NEW)
    filled_quantity = models.PositiveIntegerField(default=0)
    filled_notional = models.DecimalField(max_digits=24, decimal_places=6, default=Decimal("0"))
    fees = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("0"))
    reject_reason = models.CharField(max_length=200, blank=True)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The sweeper's claim (orders.services.orders_sweep): when it last re-sent the routing of this order
    # while it was stuck New, and how often since it last changed. Never bumps `updated_at`.
    swept_at = models.DateTimeField(null=True, blank=True, editable=False)
    sweeps = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-sequence"]
        indexes = [
            models.Index(fields=["customer", "-created_at"], name="order_customer_recent"),
            models.Index(fields=["status", "updated_at"], name="order_status_updated"),
            # The orders waiting to be routed (orders.services.routing.orders_route): few at any time,
            # claimed per ticker, oldest first.
            models.Index(fields=["ticker", "id"], condition=models.Q(status="New"), name="order_new"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=models.Q(filled_quantity__lte=models.F("quantity")), name="order_no_overfill"
            ),
            models.CheckConstraint(
                condition=(models.Q(order_type="Market") & models.Q(price__isnull=True))
                | (models.Q(order_type="Limit") & models.Q(price__gt=0)),
                name="order_price_matches_type",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="Filled") | models.Q(filled_quantity=models.F("quantity")),
                name="order_filled_means_complete",
            ),
            models.UniqueConstraint(
                fields=["customer", "client_order_id"],
                condition=models.Q(client_order_id__isnull=False),
                name="order_unique_client_order_id",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.direction} {self.quantity} {self.ticker.symbol} ({self.status})"

    @property
    def average_price(self) -> Decimal | None:
        if not self.filled_quantity:
            return None
        return (self.filled_notional / self.filled_quantity).quantize(Decimal("0.0001"))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_ORDER_STATUSES

    @property
    def venue_limit(self) -> Decimal | None:
        """The price limit slices carry to venues: the limit, or a Market order's protection price."""
        return self.price if self.price is not None else self.protection_price


class ChildOrder(models.Model):
    """A slice of a parent order (at most MAX_CHILD_QUANTITY) routed to one venue at a time."""

    parent = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="children")
    # The parent's ticker, copied when the child is created (an order's ticker never changes): a match
    # batch finds its book's waiting children by venue and ticker without joining their orders, which a
    # prepared statement's plan on a young table did through the orders' ticker index, reading every
    # order of the ticker per batch (127 index rows an order after 20 s at 100 orders/s).
    ticker = models.ForeignKey(Ticker, on_delete=models.PROTECT, related_name="+", db_index=False)
    index = models.PositiveSmallIntegerField(help_text="1-based position within the parent.")
    quantity = models.PositiveIntegerField()
    filled_quantity = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=15, choices=ChildStatus.choices, default=ChildStatus.NEW)
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, null=True, blank=True, related_name="child_orders")
    venue_time_in_force = models.CharField(max_length=3, blank=True)
    route_reason = models.CharField(max_length=200, blank=True)
    venues_tried = ArrayField(models.CharField(max_length=12), default=list, blank=True)
    # Each (re)route bumps `attempt`; a venue submission records it in `submitted_attempt`. A match
    # task carries the attempt it was sent for, so a redelivered or duplicated task is a no-op.
    attempt = models.PositiveIntegerField(default=0)
    submitted_attempt = models.PositiveIntegerField(default=0)
    # The sweeper's claim: when it last re-sent the current attempt's match task, and how often since
    # the child last changed (the wait before the next re-send doubles each time).
    swept_at = models.DateTimeField(null=True, blank=True, editable=False)
    sweeps = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["parent_id", "index"]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="child_status_updated"),
            # The children waiting for their venue (orders.services.matching): few at any time, read by
            # every batch of matches under its book's lock.
            models.Index(
                fields=["pool", "id"],
                condition=models.Q(attempt__gt=models.F("submitted_attempt"), status__in=["Routed", "PartiallyFilled"]),
                name="child_waiting",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["parent", "index"], name="child_unique_index"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="child_quantity_positive"),
            models.CheckConstraint(
                condition=models.Q(filled_quantity__lte=models.F("quantity")), name="child_no_overfill"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="Filled") | models.Q(filled_quantity=models.F("quantity")),
                name="child_filled_means_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"child {self.index} of order {self.parent_id}: {self.quantity} ({self.status})"

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled_quantity


class LiquidityRole(models.TextChoices):
    MAKER = "Maker"
    TAKER = "Taker"


class Trade(models.Model):
    """The broker's record of one fill, in the shape clients know from the seed output."""

    trade_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="trades")
    child = models.ForeignKey(ChildOrder, on_delete=models.PROTECT, related_name="trades")
    execution = models.ForeignKey(Execution, on_delete=models.PROTECT, related_name="trades")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="trades")
    ticker = models.ForeignKey(Ticker, on_delete=models.PROTECT, related_name="trades")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="trades")
    direction = models.CharField(max_length=4, choices=Direction.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=18, decimal_places=4)
    fee = models.DecimalField(max_digits=18, decimal_places=2)
    liquidity = models.CharField(max_length=5, choices=LiquidityRole.choices)
    trade_date = models.DateTimeField(db_index=True)
    settles_on = models.DateField(null=True, blank=True, help_text="Due date under the settlement cycle.")
    settlement_date = models.DateTimeField(null=True, blank=True, help_text="When it was posted to the ledger.")
    # Corrections: each amend bumps the version (the ledger posts per version); a bust ends the trade.
    version = models.PositiveIntegerField(default=1)
    busted = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["customer", "-trade_date"], name="trade_customer_recent"),
            models.Index(
                fields=["settles_on"], condition=models.Q(settlement_date__isnull=True), name="trade_unsettled"
            ),
        ]
        constraints = [
            # A venue execution becomes at most one trade per broker child: redelivery cannot duplicate.
            models.UniqueConstraint(fields=["execution", "child"], name="trade_unique_execution_child"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="trade_quantity_positive"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="trade_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.quantity} {self.ticker.symbol} @ {self.price} on {self.pool.name}"


class EventKind(models.TextChoices):
    """What an `OrderEvent` records; the order pipeline writes no other kind."""

    ACCEPTED = "accepted", "Accepted by the gateway"
    STATUS = "status", "Order status changed"
    CHILD_STATUS = "child_status", "Child order status changed"
    ROUTED = "routed", "Child order routed to a venue"
    REROUTED = "rerouted", "Child order re-routed to another venue"
    FILL = "fill", "Fill"
    SETTLED = "settled", "Trade settled"
    AMENDED = "amended", "Trade amended"
    BUSTED = "busted", "Trade busted"


class OrderEvent(models.Model):
    """Append-only audit log of everything that happened to an order and its children."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
    child = models.ForeignKey(ChildOrder, on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    from_status = models.CharField(max_length=15, blank=True)
    to_status = models.CharField(max_length=15, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["order", "id"], name="event_order")]

    def __str__(self) -> str:
        return f"{self.order_id} {self.kind} {self.from_status}->{self.to_status}"


# --- kill switch -----------------------------------------------------------------------------------


class HaltScope(models.TextChoices):
    ALL = "All", "Everything"
    POOL = "Pool"
    TICKER = "Ticker"
    CUSTOMER = "Customer"


# Which foreign key names the target of each scope (All has none).
HALT_TARGET_FIELDS: dict[str, str] = {
    HaltScope.POOL: "pool",
    HaltScope.TICKER: "ticker",
    HaltScope.CUSTOMER: "customer",
}


class Halt(models.Model):
    """The kill switch of one scope target: everything, a pool, a ticker or a customer.

    One row per target ever configured; releasing a halt sets `active` off rather than deleting the
    row, so its `HaltEvent` history stays attached. Written only by `orders.kill_switch.halt_set`.
    """

    scope = models.CharField(max_length=8, choices=HaltScope.choices)
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, null=True, blank=True, related_name="halts")
    ticker = models.ForeignKey(Ticker, on_delete=models.PROTECT, null=True, blank=True, related_name="halts")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="halts")
    active = models.BooleanField(default=False, help_text="Halted: new orders in scope are rejected.")
    reason = models.TextField(blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["scope", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(scope="All", pool__isnull=True, ticker__isnull=True, customer__isnull=True)
                    | models.Q(scope="Pool", pool__isnull=False, ticker__isnull=True, customer__isnull=True)
                    | models.Q(scope="Ticker", pool__isnull=True, ticker__isnull=False, customer__isnull=True)
                    | models.Q(scope="Customer", pool__isnull=True, ticker__isnull=True, customer__isnull=False)
                ),
                name="halt_target_matches_scope",
                violation_error_message="Set exactly the pool, ticker or customer the scope names (none for All).",
            ),
            # NULLS NOT DISTINCT (Postgres 15+): also makes the All row, whose targets are all NULL, unique.
            models.UniqueConstraint(
                fields=["scope", "pool", "ticker", "customer"],
                nulls_distinct=False,
                name="halt_unique_target",
                violation_error_message="This target already has a halt; change that one instead.",
            ),
        ]

    def __str__(self) -> str:
        state = "halted" if self.active else "released"
        return f"{self.scope} {self.target}: {state}" if self.target else f"{self.scope}: {state}"

    @property
    def target_id(self) -> int | None:
        """Primary key of the pool, ticker or customer the scope names; None for All."""
        field_name = HALT_TARGET_FIELDS.get(self.scope)
        return getattr(self, f"{field_name}_id") if field_name else None

    @property
    def target(self) -> str | None:
        """The target as clients name it: pool name, ticker symbol or customerId; None for All."""
        if self.scope == HaltScope.POOL and self.pool is not None:
            return self.pool.name
        if self.scope == HaltScope.TICKER and self.ticker is not None:
            return self.ticker.symbol
        if self.scope == HaltScope.CUSTOMER and self.customer is not None:
            return self.customer.customer_id
        return None


class HaltEvent(models.Model):
    """Append-only audit of every kill-switch toggle: who, when, why, and the state asked for."""

    halt = models.ForeignKey(Halt, on_delete=models.PROTECT, related_name="events")
    active = models.BooleanField(help_text="The state this toggle asked for.")
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["halt", "id"], name="haltevent_halt")]

    def __str__(self) -> str:
        return f"{self.halt}: {'halt' if self.active else 'release'} by {self.actor or 'system'}"


class TradeVersion(models.Model):
    """A trade as it was before a correction: append-only history with who, when and why."""

    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=18, decimal_places=4)
    fee = models.DecimalField(max_digits=18, decimal_places=2)
    settled = models.BooleanField()
    change = models.CharField(max_length=10, help_text="What replaced this version: Amend or Bust.")
    reason = models.CharField(max_length=200)
    changed_by = models.CharField(max_length=150)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trade_id", "version"]
        constraints = [models.UniqueConstraint(fields=["trade", "version"], name="trade_version_unique")]

    def __str__(self) -> str:
        return f"trade {self.trade_id} v{self.version}"


class BulkStatus(models.TextChoices):
    VALIDATING = "Validating"
    PREVIEW = "Preview", "Ready to book"
    BOOKING = "Booking"
    BOOKED = "Booked"
    FAILED = "Failed"  # the sweeper gave up resuming it; `failure_reason` says where it stopped


class BulkBatch(models.Model):
    """A CSV of orders (or generated demo orders) on its way through bulk booking.

    `rows` holds one entry per input row: its line number, the fields as given, the validation errors
    per field (empty when the row is valid) and, once booked, the order's id, status and reject reason.
    Large batches are validated and booked by a worker; `processed` counts the rows done in the
    current step, so the screen can show progress.
    """

    batch_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(max_length=200, help_text="The uploaded file's name, or how the rows were generated.")
    status = models.CharField(max_length=10, choices=BulkStatus.choices, default=BulkStatus.VALIDATING)
    rows = models.JSONField(default=list)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    valid = models.PositiveIntegerField(default=0)
    booked = models.PositiveIntegerField(default=0)
    # A batch quiet in Validating or Booking past a grace period is resumed by the sweeper
    # (orders.bulk.bulk_batches_sweep), which claims it here; after BULK_MAX_ATTEMPTS it ends Failed.
    swept_at = models.DateTimeField(null=True, blank=True, editable=False)
    sweeps = models.PositiveIntegerField(default=0, editable=False)
    failure_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bulk_batches")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "bulk batches"

    def __str__(self) -> str:
        return f"bulk batch {self.source} ({self.status})"


class StreamEvent(models.Model):
    """The fill stream's transactional outbox: every fill, order and settled message, written in the
    transaction whose change it reports, without an `eventId`. The stream's sequencer
    (orders/sequencer.py, the only writer of `event_id`) numbers the committed rows in the order it
    finds them and then publishes them, so eventIds follow commit order without the writers waiting on
    each other: a reader that has seen eventId N has seen every event numbered before it. Kept
    `STREAM_EVENTS_KEEP_HOURS` (pruned by beat)."""

    id = models.BigAutoField(primary_key=True)  # the insert's order; not visible to clients
    event_id = models.BigIntegerField(null=True, unique=True)  # the message's `eventId`, once sequenced
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+", db_index=False)
    kind = models.CharField(max_length=10)  # fill, order, settled: the message's "type"
    payload = models.JSONField()  # the message without its eventId (that is `event_id`)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["customer", "event_id"], name="streamevent_customer"),
            models.Index(fields=["created_at"], name="streamevent_created"),
            # What the sequencer reads at each pass: a handful of rows, never a scan of the table.
            models.Index(fields=["id"], condition=models.Q(event_id__isnull=True), name="streamevent_unsequenced"),
        ]

    def __str__(self) -> str:
        return f"event {self.id}: {self.kind}"
