"""The books: an append-only, double-entry ledger in Decimal.

Every movement of cash (asset "USD") or shares (asset = ticker symbol) is a `Posting` of balanced
`LedgerEntry` rows: per posting and asset the amounts sum to zero. Balances, holdings and buying
power are sums over entries; nothing is ever updated or deleted (database triggers refuse it).

Buying power is read on every order, so it must not sum an account's whole history: each `Account`
carries the sum of its entries up to an id (`folded_balance`, `folded_upto`), kept by
`settlement.services.ledger_fold` once those entries can no longer change, and a balance is that plus
the few entries after it.

The ledger refers to a broker trade only by its id (`trade_ref`): settlement sits below orders and
never imports them.
"""

from __future__ import annotations

import uuid

from django.db import models

from broker.models import Customer
from pools.models import Pool

CASH_ASSET = "USD"


class AccountKind(models.TextChoices):
    CUSTOMER_CASH = "CustomerCash", "Customer cash"
    CUSTOMER_SECURITIES = "CustomerSecurities", "Customer securities"
    VENUE_CLEARING = "VenueClearing", "Venue clearing (house)"
    FEE_INCOME = "FeeIncome", "Fee income (house)"
    CLIENT_FUNDING = "ClientFunding", "Client funding (house counterpart of deposits)"


class Account(models.Model):
    kind = models.CharField(max_length=20, choices=AccountKind.choices)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="accounts")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, null=True, blank=True, related_name="accounts")
    asset = models.CharField(max_length=12, help_text='"USD" for cash, else the ticker symbol.')
    # The sum of this account's entries with id <= folded_upto (settlement.services.ledger_fold): its
    # balance is this plus its entries after folded_upto. Both change together, in one row, so a reader
    # never sees one without the other.
    folded_balance = models.DecimalField(max_digits=24, decimal_places=6, default=0, editable=False)
    folded_upto = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["kind", "customer_id", "pool_id", "asset"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "customer", "pool", "asset"], name="account_unique", nulls_distinct=False
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind__in=["CustomerCash", "CustomerSecurities"], customer__isnull=False, pool__isnull=True)
                    | models.Q(kind="VenueClearing", customer__isnull=True, pool__isnull=False)
                    | models.Q(kind__in=["FeeIncome", "ClientFunding"], customer__isnull=True, pool__isnull=True)
                ),
                name="account_owner_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        if self.customer_id:
            owner = f"customer {self.customer_id}"
        else:
            owner = f"pool {self.pool_id}" if self.pool_id else "house"
        return f"{self.get_kind_display()} {self.asset} ({owner})"


class PostingPurpose(models.TextChoices):
    INITIAL_FUNDING = "InitialFunding", "Initial funding"
    SECURITIES_TRANSFER_IN = "TransferIn", "Securities transferred in"
    TRADE_SETTLEMENT = "TradeSettlement", "Trade settlement"
    TRADE_REVERSAL = "TradeReversal", "Reversal of a corrected or busted trade"
    CASH_DEPOSIT = "CashDeposit", "Cash deposit"
    CASH_WITHDRAWAL = "CashWithdrawal", "Cash withdrawal"
    JOURNAL = "Journal", "Journal between two customers"


class Posting(models.Model):
    """One balanced journal entry."""

    posting_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    purpose = models.CharField(max_length=20, choices=PostingPurpose.choices)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="postings")
    trade_ref = models.BigIntegerField(null=True, blank=True, help_text="The broker trade's id.")
    trade_version = models.PositiveIntegerField(default=1)
    description = models.CharField(max_length=200, blank=True)
    # An external reference (a transfer's id) that makes a deposit idempotent.
    reference = models.CharField(max_length=100, blank=True)
    # Cost basis per share of transferred-in (or journaled) shares (a trade's cost is its cash leg).
    unit_cost = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    # Who posted a deposit, withdrawal or journal by hand (staff), and a journal's receiving customer
    # (`customer` is the one it comes from): the posting is the audit record of the movement.
    actor = models.CharField(max_length=150, blank=True)
    counterparty = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "reference"], condition=~models.Q(reference=""), name="posting_unique_reference"
            ),
            # A trade (version) settles once: a replayed or concurrent settle cannot post it again.
            models.UniqueConstraint(
                fields=["trade_ref", "purpose", "trade_version"],
                condition=models.Q(trade_ref__isnull=False),
                name="posting_once_per_trade_version",
            ),
            models.UniqueConstraint(
                fields=["customer"],
                condition=models.Q(purpose="InitialFunding"),
                name="posting_one_initial_funding_per_customer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} {self.posting_id}"


class Leg(models.TextChoices):
    CASH = "Cash"
    SECURITIES = "Securities"
    FEE = "Fee"
    FUNDING = "Funding"  # money or shares from or to outside the broker (deposits, withdrawals, transfers)
    JOURNAL = "Journal"  # between two customers' accounts


class LedgerEntry(models.Model):
    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    asset = models.CharField(max_length=12)
    amount = models.DecimalField(
        max_digits=24, decimal_places=6, help_text="Signed: positive is a credit to the holder."
    )
    leg = models.CharField(max_length=10, choices=Leg.choices)
    # Copied from the posting so the database itself can refuse a second posting of a trade's leg.
    purpose = models.CharField(max_length=20, choices=PostingPurpose.choices)
    trade_ref = models.BigIntegerField(null=True, blank=True)
    trade_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["account", "id"], name="entry_account"),
            # The movements that are not trades (funding, transfers in), by time: the reporting aggregation
            # reads them day by day, and they are a sliver of a ledger that grows with every trade (a
            # scan of the whole ledger per day made a year's rebuild three times slower after 10k trades).
            models.Index(
                fields=["created_at"],
                name="entry_not_trade_by_time",
                condition=~models.Q(purpose__in=[PostingPurpose.TRADE_SETTLEMENT, PostingPurpose.TRADE_REVERSAL]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["trade_ref", "purpose", "trade_version", "leg", "account"],
                condition=models.Q(trade_ref__isnull=False),
                name="entry_once_per_trade_leg_account",
            ),
            models.CheckConstraint(condition=~models.Q(amount=0), name="entry_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.leg} {self.amount} {self.asset} -> {self.account_id}"


class LedgerFold(models.Model):
    """Where `ledger_fold` stands: one row (id 1).

    `upto`: every entry with id <= upto is in its account's `folded_balance`. `next_upto`, `next_xid`:
    the next fold's candidate, noted at an earlier pass: the newest entry id then, and the first
    transaction id not yet started then. It is folded once every transaction below `next_xid` has
    ended (then no entry up to `next_upto` can still appear: see `ledger_fold`).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    upto = models.BigIntegerField(default=0)
    next_upto = models.BigIntegerField(null=True)
    next_xid = models.BigIntegerField(null=True)
    folded_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="ledger_fold_single_row")]

    def __str__(self) -> str:
        return f"ledger folded up to entry {self.upto}"


class Reservation(models.Model):
    """Buying power (cash) or shares an order holds until it is finished and its trades settle.

    What it holds is `per_unit * open_units + pending`: the reserve for the quantity still open, plus
    the actual cost (cash) or quantity (shares) of fills not yet posted to the ledger.
    """

    order_ref = models.BigIntegerField(unique=True, help_text="The broker order's id.")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="reservations")
    asset = models.CharField(max_length=12, help_text='"USD" for a buy, the ticker symbol for a sell.')
    per_unit = models.DecimalField(max_digits=18, decimal_places=6)
    units = models.PositiveIntegerField(help_text="Quantity reserved for at entry.")
    open_units = models.PositiveIntegerField()
    pending = models.DecimalField(max_digits=24, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["customer", "asset"],
                condition=models.Q(open_units__gt=0) | ~models.Q(pending=0),
                name="reservation_outstanding",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(open_units__lte=models.F("units")), name="reservation_open_le_units"
            ),
            models.CheckConstraint(condition=models.Q(pending__gte=0), name="reservation_pending_not_negative"),
            models.CheckConstraint(condition=models.Q(per_unit__gt=0), name="reservation_per_unit_positive"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_ref}: {self.per_unit} x {self.open_units} + {self.pending} {self.asset}"

    @property
    def outstanding(self) -> object:
        return self.per_unit * self.open_units + self.pending
