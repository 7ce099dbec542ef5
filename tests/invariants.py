"""Whole-database checks of the invariants (ARCHITECTURE.md: 1 no over-fill, 2 conservation, 5 books,
6 nothing lost).

Each check returns a list of human-readable violations, so a failing test says exactly what broke.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Max, Min, Q, Sum

from broker.models import Customer
from orders.models import FINAL_CHILD_STATUSES, FINAL_ORDER_STATUSES, ChildOrder, ChildStatus, Order, OrderStatus, Trade
from pools.models import BookOrder, BookOrderStatus, Execution, PoolKind
from reporting.reconciliation import check_folded_balances
from settlement.models import AccountKind, LedgerEntry, Posting, PostingPurpose
from settlement.selectors import asset_totals, cash_balance, holdings


def order_violations() -> list[str]:
    """No over-fill, and every status agrees with the filled quantity (parents and children)."""
    problems = []
    traded = dict(
        Trade.objects.filter(busted=False)
        .values("order_id")
        .annotate(total=Sum("quantity"))
        .values_list("order_id", "total")
    )
    for order in Order.objects.all():
        total = traded.get(order.pk, 0)
        if total != order.filled_quantity:
            problems.append(f"order {order.pk}: trades sum {total} != filledQuantity {order.filled_quantity}")
        if order.filled_quantity > order.quantity:
            problems.append(f"order {order.pk}: over-filled {order.filled_quantity}/{order.quantity}")
        expected_full = order.filled_quantity == order.quantity
        if (order.status == OrderStatus.FILLED) != expected_full:
            problems.append(f"order {order.pk}: status {order.status} with {order.filled_quantity}/{order.quantity}")
        if order.status == OrderStatus.PARTIALLY_FILLED and not 0 < order.filled_quantity < order.quantity:
            problems.append(f"order {order.pk}: PartiallyFilled with {order.filled_quantity}/{order.quantity}")
        if order.status in (OrderStatus.NEW, OrderStatus.ROUTED, OrderStatus.REJECTED) and order.filled_quantity:
            problems.append(f"order {order.pk}: {order.status} but {order.filled_quantity} filled")
    child_traded = dict(
        Trade.objects.filter(busted=False)
        .values("child_id")
        .annotate(total=Sum("quantity"))
        .values_list("child_id", "total")
    )
    for child in ChildOrder.objects.all():
        total = child_traded.get(child.pk, 0)
        if total != child.filled_quantity or child.filled_quantity > child.quantity:
            problems.append(f"child {child.pk}: trades {total}, filled {child.filled_quantity}, qty {child.quantity}")
        if (child.status == ChildStatus.FILLED) != (child.filled_quantity == child.quantity):
            problems.append(f"child {child.pk}: status {child.status} with {child.filled_quantity}/{child.quantity}")
    return problems


def execution_violations() -> list[str]:
    """Every trade has its venue execution, and the venue's view of each child equals the broker's."""
    problems = []
    trades_per_execution: Counter[int] = Counter()
    for trade in Trade.objects.filter(busted=False).select_related("execution__maker", "execution__taker"):
        execution = trade.execution
        trades_per_execution[execution.pk] += 1
        if (execution.pool_id, execution.price, execution.quantity) != (trade.pool_id, trade.price, trade.quantity):
            problems.append(f"trade {trade.pk}: differs from its execution {execution.pk}")
        if trade.child_id not in (execution.maker.client_ref, execution.taker.client_ref):
            problems.append(f"trade {trade.pk}: its child is not a side of execution {execution.pk}")
    venue_filled: dict[int, int] = defaultdict(int)
    for execution in Execution.objects.filter(busted=False).select_related("maker", "taker"):
        client_sides = [side.client_ref for side in (execution.maker, execution.taker) if side.client_ref]
        for child_id in client_sides:
            venue_filled[child_id] += execution.quantity
        if trades_per_execution[execution.pk] != len(client_sides):
            problems.append(
                f"execution {execution.pk}: {trades_per_execution[execution.pk]} trades for "
                f"{len(client_sides)} broker sides"
            )
    for child_id, filled in ChildOrder.objects.values_list("pk", "filled_quantity"):
        if venue_filled.get(child_id, 0) != filled:
            problems.append(f"child {child_id}: venue executed {venue_filled.get(child_id, 0)}, broker {filled}")
    return problems


def book_violations() -> list[str]:
    """Lit books are never crossed; every open venue order of a child matches the child's open quantity."""
    problems = []
    tops = (
        BookOrder.objects.filter(status=BookOrderStatus.OPEN, book__pool__kind=PoolKind.LIT)
        .values("book_id")
        .annotate(bid=Max("price", filter=Q(side="Buy")), ask=Min("price", filter=Q(side="Sell")))
    )
    for top in tops:
        if top["bid"] is not None and top["ask"] is not None and top["bid"] >= top["ask"]:
            problems.append(f"book {top['book_id']}: crossed, bid {top['bid']} >= ask {top['ask']}")
    children = {child.pk: child for child in ChildOrder.objects.all()}
    for resting in BookOrder.objects.filter(status=BookOrderStatus.OPEN, client_ref__isnull=False):
        child = children.get(resting.client_ref)  # type: ignore[arg-type]
        if child is None or child.status in (ChildStatus.FILLED, ChildStatus.CANCELLED, ChildStatus.EXPIRED):
            problems.append(f"venue order {resting.pk}: open for a finished or unknown child {resting.client_ref}")
        elif resting.remaining != child.remaining:
            problems.append(
                f"venue order {resting.pk}: {resting.remaining} open, child {child.pk} has {child.remaining}"
            )
    return problems


def ledger_violations() -> list[str]:
    """Double entry sums to zero per asset; each settled trade is posted exactly once; every customer's
    cash is initial funds minus buys plus sells minus fees; holdings equal the settled trades."""
    problems = [f"ledger: asset {asset} sums to {total}" for asset, total in asset_totals().items() if total != 0]
    settled = Trade.objects.filter(settlement_date__isnull=False, busted=False)
    posted: Counter[int] = Counter(
        ref
        for ref in Posting.objects.filter(purpose=PostingPurpose.TRADE_SETTLEMENT).values_list("trade_ref", flat=True)
        if ref is not None
    )
    reversed_: Counter[int] = Counter(
        ref
        for ref in Posting.objects.filter(purpose=PostingPurpose.TRADE_REVERSAL).values_list("trade_ref", flat=True)
        if ref is not None
    )
    for trade_id in settled.values_list("pk", flat=True):
        if posted[trade_id] - reversed_[trade_id] != 1:
            problems.append(f"trade {trade_id}: settled but posted {posted[trade_id]}, reversed {reversed_[trade_id]}")
    unsettled_posted = {ref for ref in posted if posted[ref] != reversed_[ref]} - set(
        settled.values_list("pk", flat=True)
    )
    if unsettled_posted:
        problems.append(f"trades posted but not marked settled: {sorted(unsettled_posted)[:10]}")
    for customer in Customer.objects.all():
        funded = Posting.objects.filter(customer=customer, purpose=PostingPurpose.INITIAL_FUNDING).exists()
        expected = customer.initial_funds if funded else Decimal(0)
        shares: dict[str, int] = defaultdict(int)
        transfers = LedgerEntry.objects.filter(
            posting__customer=customer,
            purpose=PostingPurpose.SECURITIES_TRANSFER_IN,
            account__kind=AccountKind.CUSTOMER_SECURITIES,
        ).values_list("asset", "amount")
        for symbol, amount in transfers:
            shares[symbol] += int(amount)
        for trade in settled.filter(customer=customer).select_related("ticker"):
            notional = (trade.price * trade.quantity).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            sign = 1 if trade.direction == "Buy" else -1
            expected += -sign * notional - trade.fee
            shares[trade.ticker.symbol] += sign * trade.quantity
        if cash_balance(customer_id=customer.pk) != expected:
            problems.append(
                f"customer {customer.customer_id}: cash {cash_balance(customer_id=customer.pk)} != {expected}"
            )
        held = {symbol: int(h.quantity) for symbol, h in holdings(customer_id=customer.pk).items() if h.quantity}
        if any(quantity < 0 for quantity in held.values()) or cash_balance(customer_id=customer.pk) < 0:
            problems.append(f"customer {customer.customer_id}: short or overdrawn: {held}")
        if held != {symbol: quantity for symbol, quantity in shares.items() if quantity}:
            problems.append(f"customer {customer.customer_id}: holdings {held} != settled trades {dict(shares)}")
    # The running sums buying power reads (settlement.services.ledger_fold) agree with the entries.
    problems.extend(
        f"account {found.records['account']}: {found.actual}, {found.expected}" for found in check_folded_balances()
    )
    return problems


def lost_order_violations() -> list[str]:
    """Invariant 6, once the flow is quiet: every order is final, or rests visibly: Routed or
    PartiallyFilled with no child still waiting for its venue and its whole open remainder resting on
    venue books. Not part of `all_violations`: it only holds after the workers have drained."""
    problems = []
    resting = dict(
        BookOrder.objects.filter(status=BookOrderStatus.OPEN, client_ref__isnull=False).values_list(
            "client_ref", "remaining"
        )
    )
    for order in Order.objects.prefetch_related("children").order_by("pk"):
        if order.status in FINAL_ORDER_STATUSES:
            continue
        if order.status not in (OrderStatus.ROUTED, OrderStatus.PARTIALLY_FILLED):
            problems.append(f"order {order.pk}: left {order.status}")
            continue
        open_children = [child for child in order.children.all() if child.status not in FINAL_CHILD_STATUSES]
        for child in open_children:
            if child.attempt > child.submitted_attempt:
                problems.append(f"order {order.pk}: child {child.pk} attempt {child.attempt} never reached its venue")
        on_books = sum(resting.get(child.pk, 0) for child in open_children)
        if on_books != order.quantity - order.filled_quantity:
            problems.append(
                f"order {order.pk}: {order.status} with {order.quantity - order.filled_quantity} open "
                f"but {on_books} resting on venue books"
            )
    return problems


def all_violations() -> list[str]:
    return order_violations() + execution_violations() + book_violations() + ledger_violations()
