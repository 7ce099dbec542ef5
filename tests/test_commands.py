"""Management commands: the demo seed is idempotent; api_token prints the token as its last line."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from broker.models import Customer, PriceBar, Ticker
from pools.models import Book, BookOrder, Pool, PoolKind

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, ...]:
    return (
        Customer.objects.count(),
        Ticker.objects.count(),
        Pool.objects.count(),
        Book.objects.count(),
        BookOrder.objects.count(),
        get_user_model().objects.count(),
    )


def test_seed_demo_loads_everything_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # given chosen passwords for the admin and the demo staff
    monkeypatch.setenv("BROKER_ADMIN_PASSWORD", "chosen-in-test")
    monkeypatch.setenv("BROKER_TRADER_PASSWORD", "chosen-trader")
    monkeypatch.setenv("BROKER_OPS_PASSWORD", "chosen-ops")

    # when the seed runs twice
    first = run("seed_demo")
    after_first = counts()
    run("seed_demo")

    # then the second run changed nothing
    assert counts() == after_first
    # and it loaded ten customers, the twenty shipped tickers at their last close, six venues with books
    assert [c.customer_id for c in Customer.objects.all()] == [f"{n:06d}" for n in range(1, 11)]
    assert Ticker.objects.count() == 20
    assert Ticker.objects.get(symbol="AAPL").reference_price == Decimal("170.7300")  # 170.729996 on 2024-03-08
    assert Ticker.objects.get(symbol="SPY").name == "SPDR S&P 500 ETF Trust"
    # with every shipped daily bar (one line per bar after each file's header)
    shipped = sorted((Path(__file__).resolve().parents[1] / "broker" / "data" / "prices").glob("*.csv"))
    assert PriceBar.objects.count() == sum(len(path.read_text().splitlines()) - 1 for path in shipped) == 20737
    assert Pool.objects.filter(kind=PoolKind.LIT).count() == 4
    assert Pool.objects.filter(kind=PoolKind.DARK).count() >= 2
    assert Book.objects.count() == 20 * Pool.objects.count()
    assert not Book.objects.filter(best_bid__isnull=True, pool__kind=PoolKind.LIT).exists()
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("chosen-in-test")
    assert "password" not in first  # a chosen password is never printed


def test_seed_demo_prints_a_generated_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROKER_ADMIN_PASSWORD", raising=False)

    first, second = run("seed_demo"), run("seed_demo")

    assert "with password" in first
    assert "with password" not in second


def test_api_token_prints_the_same_token_until_rotated() -> None:
    # given the demo customers
    run("seed_demo")

    # when the token of 000002 is asked for twice, then rotated
    first = run("api_token", "000002").splitlines()[-1]
    again = run("api_token", "000002").splitlines()[-1]
    rotated = run("api_token", "000002", "--rotate").splitlines()[-1]

    # then it is that customer's client user's one token, replaced only on --rotate
    assert first == again != rotated
    token = Token.objects.select_related("user").get(key=rotated)
    assert Customer.objects.get(customer_id="000002").user == token.user
    assert not token.user.is_staff
    assert Token.objects.filter(user=token.user).count() == 1


def test_api_token_for_staff_and_refusals() -> None:
    run("seed_demo")

    key = run("api_token", "--staff", "desk").splitlines()[-1]

    assert Token.objects.get(key=key).user.is_staff
    with pytest.raises(CommandError, match="Unknown customer"):
        run("api_token", "999999")
    with pytest.raises(CommandError, match="either"):
        run("api_token")
    run("api_token", "000002")  # creates the client user client-000002
    with pytest.raises(CommandError, match="not staff"):
        run("api_token", "--staff", "client-000002")


def test_api_token_for_staff_gives_the_user_a_role_that_decides_what_the_token_may_do() -> None:
    from rest_framework.test import APIClient

    from broker.roles import roles_of

    def halts_status(key: str) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client.get("/api/halts").status_code

    # when a token is minted for a new user without --role, and for another with --role Operations
    desk = run("api_token", "--staff", "desk").splitlines()
    ops = run("api_token", "--staff", "ops", "--role", "Operations").splitlines()

    # then the first is an Admin, the second Operations, and each says so
    assert desk[0] == "Created staff user desk with role Admin."
    assert ops[0] == "Created staff user ops with role Operations."
    assert roles_of(Token.objects.get(key=desk[-1]).user) == ["Admin"]
    assert halts_status(ops[-1]) == 200

    # when ops is given another role, then once more without --role
    demoted = run("api_token", "--staff", "ops", "--role", "Trader").splitlines()
    again = run("api_token", "--staff", "ops").splitlines()

    # then the same token now has the Trader's rights only, and the role stays until changed again
    assert demoted[0] == "Staff user ops now has role Trader (was Operations)."
    assert demoted[-1] == again[-1] == ops[-1]
    assert again[0] == "Staff user ops has role Trader."
    assert roles_of(Token.objects.get(key=ops[-1]).user) == ["Trader"]
    assert halts_status(ops[-1]) == 403
    with pytest.raises(CommandError, match="invalid choice"):
        run("api_token", "--staff", "ops", "--role", "Boss")
    with pytest.raises(CommandError, match="--role is for staff"):
        run("api_token", "000002", "--role", "Trader")
