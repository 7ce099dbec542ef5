"""Demo data: customers 000001-000010, the shipped tickers, the venues and their liquidity. Idempotent."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand

from broker import services as broker_services
from broker.marketdata import services as marketdata_services
from broker.models import Customer, Ticker
from orders import roles
from pools import services as pool_services
from pools.models import PoolKind
from settlement import services as settlement_services

CUSTOMERS = [
    ("000001", "Aldgate Capital Partners", "1000000.00"),
    ("000002", "Bishopsgate Asset Management", "5000000.00"),
    ("000003", "Cheapside Family Office", "750000.00"),
    ("000004", "Drury Lane Pension Fund", "10000000.00"),
    ("000005", "Eastcheap Growth Fund", "2500000.00"),
    ("000006", "Fenchurch Quant Strategies", "3000000.00"),
    ("000007", "Gracechurch Endowment", "1500000.00"),
    ("000008", "Holborn Retail Clients", "250000.00"),
    ("000009", "Islington Trading LLC", "500000.00"),
    ("000010", "Jewry Street Investors", "2000000.00"),
]

# (code, description, kind, maker fee per share, taker fee per share)
POOLS = [
    ("EDGA", "Cboe EDGA Exchange", PoolKind.LIT, "0.0002", "0.00058"),
    ("EDGX", "Cboe EDGX Exchange", PoolKind.LIT, "0.0000", "0.0030"),
    ("BZX", "Cboe BZX Exchange", PoolKind.LIT, "0.0000", "0.0030"),
    ("IEX", "Investors Exchange", PoolKind.LIT, "0.0009", "0.0009"),
    ("UBSA", "UBS ATS (dark)", PoolKind.DARK, "0.0010", "0.0010"),
    ("MSPL", "MS Pool (dark)", PoolKind.DARK, "0.0012", "0.0012"),
]

# (user name, role, environment variable that may set the password)
DEMO_STAFF = [
    ("trader", roles.TRADER, "BROKER_TRADER_PASSWORD"),
    ("ops", roles.OPERATIONS, "BROKER_OPS_PASSWORD"),
]

OPENING_POSITION = 1000  # shares of every ticker each demo customer starts with


class Command(BaseCommand):
    help = "Load demo customers, tickers (from the shipped Yahoo prices), venues and liquidity. Safe to re-run."

    def handle(self, *args: Any, **options: Any) -> None:
        for customer_id, name, funds in CUSTOMERS:
            customer = broker_services.customer_upsert(
                customer_id=customer_id,
                name=name,
                email=f"desk+{customer_id}@example.com",
                initial_funds=Decimal(funds),
            )
            settlement_services.customer_fund_initial(customer=customer)
        # The shipped snapshot: tickers, quotes and daily history, for the tickers without market data
        # yet (a re-run must not overwrite quotes fetched from Yahoo since).
        symbols = broker_services.snapshot_symbols()
        fetched = set(Ticker.objects.filter(quote_fetched_at__isnull=False).values_list("symbol", flat=True))
        marketdata_services.snapshot_load(symbols=[symbol for symbol in symbols if symbol not in fetched])
        tickers = list(Ticker.objects.filter(symbol__in=symbols))
        for code, description, kind, maker_fee, taker_fee in POOLS:
            pool_services.pool_seed(
                name=code,
                kind=kind,
                description=description,
                maker_fee=Decimal(maker_fee),
                taker_fee=Decimal(taker_fee),
            )
        for ticker in tickers:
            pool_services.books_ensure(ticker_id=ticker.pk)
        # Opening positions, so every demo customer can sell as well as buy from the start.
        for customer_id, _, _ in CUSTOMERS:
            customer = Customer.objects.get(customer_id=customer_id)
            for ticker in tickers:
                settlement_services.customer_transfer_in(
                    customer=customer,
                    symbol=ticker.symbol,
                    quantity=OPENING_POSITION,
                    unit_cost=ticker.reference_price or Decimal(0),
                    reference=f"opening:{customer_id}:{ticker.symbol}",
                )
        username = os.environ.get("BROKER_ADMIN_USERNAME", "admin")
        _, generated = broker_services.staff_superuser_ensure(
            username=username, password=os.environ.get("BROKER_ADMIN_PASSWORD")
        )
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created staff superuser {username!r} with password {generated!r} (shown once; "
                    "set BROKER_ADMIN_PASSWORD to choose it)."
                )
            )
        # One demo user per staff role, for the staff screens (http://127.0.0.1:8000/).
        for staff_name, group, password_variable in DEMO_STAFF:
            _, staff_password = roles.staff_member_ensure(
                username=staff_name, password=os.environ.get(password_variable), group=group
            )
            if staff_password:
                self.stdout.write(
                    self.style.WARNING(
                        f"Created {group} user {staff_name!r} with password {staff_password!r} (shown once; "
                        f"set {password_variable} to choose it)."
                    )
                )
        self.stdout.write(f"Demo data ready: {len(CUSTOMERS)} customers, {len(tickers)} tickers, {len(POOLS)} venues.")
