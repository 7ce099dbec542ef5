"""The smart order router's decisions as pure functions: split, dark first, price then fee, re-route."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders import routing

D = Decimal
EDGA = routing.Venue(pool_id=1, name="EDGA", maker_fee=D("0.0002"), taker_fee=D("0.00058"))
EDGX = routing.Venue(pool_id=2, name="EDGX", maker_fee=D("0"), taker_fee=D("0.0030"))
IEX = routing.Venue(pool_id=3, name="IEX", maker_fee=D("0.0009"), taker_fee=D("0.0009"))
UBSA = routing.Venue(pool_id=10, name="UBSA", maker_fee=D("0.001"), taker_fee=D("0.001"))
MSPL = routing.Venue(pool_id=11, name="MSPL", maker_fee=D("0.0012"), taker_fee=D("0.0012"))
LIT = [EDGA, EDGX, IEX]
DARK = [UBSA, MSPL]


def plan(**overrides: object) -> list[routing.ChildPlan]:
    arguments: dict[str, object] = {
        "side": "Buy",
        "limit": D("100.00"),
        "quantity": 500,
        "time_in_force": "Day",
        "max_child": 1000,
        "dark_min_quantity": 2000,
        "midpoint": D("99.95"),
        "dark": DARK,
        "lit": LIT,
        "depth": [],
    }
    arguments.update(overrides)
    return routing.plan_children(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("quantity", "slices"),
    [(8614, [1000] * 8 + [614]), (1000, [1000]), (999, [999]), (2000, [1000, 1000]), (1, [1])],
)
def test_split_into_slices_of_at_most_max_child(quantity: int, slices: list[int]) -> None:
    assert routing.split_quantity(quantity, 1000) == slices


def test_large_order_pings_each_dark_pool_first_when_midpoint_is_inside_the_limit() -> None:
    depth = [routing.Level(pool_id=1, price=D("99.98"), quantity=10_000)]
    children = plan(quantity=8614, depth=depth)
    assert [child.pool_id for child in children[:2]] == [UBSA.pool_id, MSPL.pool_id]
    assert all(child.venue_time_in_force == "IOC" for child in children[:2])
    assert "dark first" in children[0].reason
    assert all(child.pool_id == EDGA.pool_id for child in children[2:])


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"quantity": 1999}, "small order"),
        ({"quantity": 5000, "midpoint": D("100.01")}, "midpoint above the buy limit"),
        ({"quantity": 5000, "midpoint": None}, "no two-sided NBBO"),
        ({"quantity": 5000, "side": "Sell", "midpoint": D("99.99")}, "midpoint below the sell limit"),
        ({"quantity": 5000, "dark": []}, "no dark pool"),
    ],
)
def test_dark_pools_are_skipped(overrides: dict[str, object], why: str) -> None:
    children = plan(**overrides)
    assert all(child.pool_id in {venue.pool_id for venue in LIT} for child in children), why


def test_market_order_accepts_any_midpoint_for_dark() -> None:
    children = plan(quantity=3000, limit=None, midpoint=D("123.45"))
    assert children[0].pool_id == UBSA.pool_id


def test_best_price_first_then_lowest_taker_fee_consuming_displayed_depth() -> None:
    # given the same best price on EDGX (fee 0.0030) and IEX (fee 0.0009), then a worse price on EDGA
    depth = [
        routing.Level(pool_id=EDGA.pool_id, price=D("99.99"), quantity=1000),
        routing.Level(pool_id=EDGX.pool_id, price=D("99.98"), quantity=600),
        routing.Level(pool_id=IEX.pool_id, price=D("99.98"), quantity=400),
    ]

    # when three slices are planned
    children = plan(quantity=1900, max_child=700, depth=depth)

    # then IEX (cheaper at the best price) first, then EDGX, then EDGA at the next price
    assert [child.pool_id for child in children] == [IEX.pool_id, EDGX.pool_id, EDGA.pool_id]
    assert "best lit price 99.98 on IEX" in children[0].reason


def test_sell_side_takes_the_highest_bid() -> None:
    depth = [
        routing.Level(pool_id=EDGA.pool_id, price=D("99.90"), quantity=1000),
        routing.Level(pool_id=IEX.pool_id, price=D("99.95"), quantity=1000),
    ]
    children = plan(side="Sell", limit=D("99.00"), depth=depth)
    assert children[0].pool_id == IEX.pool_id


def test_nothing_to_take_rests_on_the_cheapest_venue_to_rest_on() -> None:
    children = plan(depth=[])
    assert children[0].pool_id == EDGX.pool_id  # maker fee 0
    assert "rests" in children[0].reason


def test_market_and_ioc_slices_are_immediate_or_cancel_at_lit_venues() -> None:
    assert plan(limit=None)[0].venue_time_in_force == "IOC"
    assert plan(time_in_force="IOC")[0].venue_time_in_force == "IOC"
    assert plan(time_in_force="GTC")[0].venue_time_in_force == "GTC"


def test_reroute_goes_to_the_best_untried_venue_or_nowhere() -> None:
    depth = [
        routing.Level(pool_id=EDGA.pool_id, price=D("99.97"), quantity=100),
        routing.Level(pool_id=IEX.pool_id, price=D("99.99"), quantity=100),
    ]
    target = routing.next_lit_venue(side="Buy", tried=["UBSA", "EDGA"], lit=LIT, depth=depth, can_rest=False)
    assert target is not None
    assert target[0] == IEX
    assert routing.next_lit_venue(side="Buy", tried=["EDGA", "IEX"], lit=LIT, depth=depth, can_rest=False) is None
    resting = routing.next_lit_venue(side="Buy", tried=["EDGA", "IEX"], lit=LIT, depth=depth, can_rest=True)
    assert resting is not None
    assert resting[0] == EDGX
