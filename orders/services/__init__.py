"""Order writes: place, route, match at a venue, cancel, settle, correct, sweep.

One module per concern: `placement` (the gateway), `routing` (the smart order router's plan and fill or
kill), `matching` (a venue's book drained in batches), `closing` (cancel, expire), `settlement`,
`corrections` (amend, bust), `recovery` (the sweeper). Every status change of an order or a child goes
through `transitions.transition`, checked against the tables in `orders.models`; after-commit effects
(tasks to send, messages to stream) through `effects.Effects`.

Lock order: every write path (here, in `pools.services` and in `settlement.services`) takes its row locks
in this one global order, skipping what it does not need, so no two transactions wait for each other
in a cycle:
    customer (placement only)
      -> venue books (by pool id)
      -> parent orders (by id)
      -> child orders (by id)
      -> trades (by id)
      -> venue executions (corrections only)
      -> ledger: postings, accounts (created in key order; otherwise only referenced, never locked)
      -> reservations (by order id)
Settlement starts at the trade (it locks no order), placement at the customer, matching at its book,
a routing batch at its ticker's lit books that no one holds (skipped, never waited for, when held) and
then its New orders, so that it can match their children in the same transaction.
Within one statement that locks several rows (a batch's parents, trades or reservations), they are
locked in that order by id (ORDER BY ... FOR NO KEY UPDATE).

Lock strength: every row lock is FOR NO KEY UPDATE (`select_for_update(no_key=True, of=("self",))`),
never FOR UPDATE. Our foreign keys are DEFERRABLE INITIALLY DEFERRED, so every row a transaction
inserts takes FOR KEY SHARE on the rows it references (customer, ticker, pool, order, child, execution)
at COMMIT, that is out of the order above. FOR KEY SHARE conflicts only with FOR UPDATE (and with
deleting or re-keying a row, which no path does), so with no-key locks those checks never wait. With
FOR UPDATE they did: settlement held a trade and its order's reservation and, at commit, checked its
event's order and child, which matching (or a cancel, or a correction) held while it waited for that
reservation or trade; Postgres killed one of them (issue 10, item 4).

A book row lock (`pools.services.book_lock`) is the one-matcher-per-(pool, ticker) guarantee; a batch
of matches holds it once for all its children (`matching.book_match`). A child is
only ever changed while the book of its current venue is locked (matching, re-routing, cancelling) or,
once its order is finished, by a correction holding that order; a parent's fill totals only while the
parent row is locked. Cancels and corrections also run again after a deadlock or serialization failure
(`broker.transactions.retry_on_lock_conflict`), a last line of defence that answers 503, never 500.

Side effects (enqueueing tasks, streaming fills) run only after commit, through `effects.Effects`.
"""

from orders.services.closing import market_last_close, order_cancel, order_expire, orders_expire_day
from orders.services.corrections import trade_correct
from orders.services.matching import book_match, child_match
from orders.services.placement import Placement, order_place
from orders.services.recovery import orders_sweep, sweep_backoff_reset
from orders.services.routing import order_route, orders_route
from orders.services.settlement import trade_settle, trades_settle, trades_settle_due, trades_settle_pending
from orders.services.transitions import TransitionRefused, transition

__all__ = [
    "Placement",
    "TransitionRefused",
    "book_match",
    "child_match",
    "market_last_close",
    "order_cancel",
    "order_expire",
    "order_place",
    "order_route",
    "orders_expire_day",
    "orders_route",
    "orders_sweep",
    "sweep_backoff_reset",
    "trade_correct",
    "trade_settle",
    "trades_settle",
    "trades_settle_due",
    "trades_settle_pending",
    "transition",
]
