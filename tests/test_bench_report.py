"""The benchmark's pure parts: the sustainable-step rule, the order mix, and latest.json's keys."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.api_load import Client, Instrument, LatencyResult, OrderMix
from bench.report import (
    AGGREGATION_RATIO,
    JSON_FIGURES,
    LIGHT,
    LOCK_UPDATE_INSERT,
    MATCHED,
    NOT_ACCEPTED,
    P50,
    P99,
    RAW_INSERT,
    RSS_END,
    RSS_START,
    STATEMENT_PAGE,
    SUSTAINABLE,
    UNFILLED,
    Report,
    Row,
)
from bench.sustain import Step, sustainable_rate

REQUIRED_KEYS = {
    "raw_insert_per_s",
    "lock_update_insert_per_s",
    "hot_book_matched_per_s",
    "api_accepted_per_s",
    "latency_100_p50_ms",
    "latency_100_p99_ms",
    "latency_100_unfilled",
    "light_p99_ms",
    "sustainable_rate_per_s",
    "queries_per_order",
    "worker_rss_mb_start",
    "worker_rss_mb_end",
    "aggregation_vs_group_by",  # issue 12's aggregation phase
    "statement_page_ms",
}


def a_step(**changes: Any) -> Step:
    """A step that meets every condition at 100 orders/s; each test breaks one."""
    step = Step(
        offered_per_s=100,
        seconds=20,
        sent=2000,
        accepted=2000,
        filled=2000,
        p50_s=0.020,
        p99_s=0.080,
        achieved_send_per_s=100,
        send_lag_p99_s=0.001,
        generator_cpu=0.1,
        backlog_early=2.0,
        backlog_end=2.5,
        early_mark_s=5,
        errors={},
    )
    return dataclasses.replace(step, **changes)


# --- the sustainable-step rule -----------------------------------------------------------------------


def test_a_step_that_meets_every_condition_is_sustained() -> None:
    # given / when
    step = a_step()

    # then
    assert step.sustained
    assert step.shortfalls() == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"accepted": 1999, "filled": 1999}, "not accepted"),
        ({"filled": 1999}, "not filled"),
        ({"p99_s": 0.101}, "p99"),
        ({"p99_s": math.inf, "filled": 1900}, "p99"),
        ({"p99_s": None}, "p99"),
        ({"backlog_early": 2.0, "backlog_end": 12.5}, "backlog grew"),
        ({"backlog_end": None}, "backlog not sampled"),
        ({"achieved_send_per_s": 90}, "load generator"),
    ],
)
def test_a_step_fails_on_any_one_condition(changes: dict[str, Any], reason: str) -> None:
    # given
    step = a_step(**changes)

    # when
    shortfalls = step.shortfalls()

    # then
    assert not step.sustained
    assert any(reason in text for text in shortfalls), shortfalls


def test_backlog_growth_of_less_than_100_ms_of_arrivals_is_noise() -> None:
    # given: at 100 orders/s, 100 ms of arrivals are 10 orders
    within = a_step(backlog_early=1.0, backlog_end=11.0)
    beyond = a_step(backlog_early=1.0, backlog_end=11.1)
    high_but_steady = a_step(backlog_early=30.0, backlog_end=30.4)

    # then
    assert within.sustained
    assert not beyond.sustained
    assert high_but_steady.sustained


def test_the_sustainable_rate_is_the_last_step_sustained_before_the_first_failure() -> None:
    # given
    steps = [
        a_step(offered_per_s=25),
        a_step(offered_per_s=50),
        a_step(offered_per_s=100, filled=1999),
        # a later success does not count: the climb stops at the first failure
        a_step(offered_per_s=200),
    ]

    # when / then
    assert sustainable_rate(steps) == 50
    assert sustainable_rate(steps[:1]) == 25
    assert sustainable_rate([a_step(offered_per_s=25, p99_s=0.2)]) == 0
    assert sustainable_rate([]) == 0


def test_a_step_as_json_has_no_infinity() -> None:
    # given
    step = a_step(p50_s=math.inf, p99_s=math.inf, filled=0)

    # when
    data = json.loads(json.dumps(step.as_json(), allow_nan=False))

    # then
    assert data["p50_ms"] is None
    assert data["p99_ms"] is None
    assert data["sustained"] is False
    assert data["unfilled"] == 2000


# --- the order mix -----------------------------------------------------------------------------------


def test_the_hot_ticker_takes_its_share_and_each_customer_alternates_buy_and_sell_per_ticker() -> None:
    # given
    clients = [Client(f"{number:06d}", "token") for number in range(1, 11)]
    instruments = [Instrument(symbol, Decimal("100.00")) for symbol in ("AMD", "BAC", "DIS")]
    mix = OrderMix(clients, instruments, hot=Instrument("AAPL", Decimal("170.00")), hot_share=0.25)

    # when
    orders = [mix.order(number) for number in range(400)]

    # then
    per_ticker = Counter(instrument.symbol for _, instrument, _ in orders)
    assert per_ticker["AAPL"] == 100
    assert {per_ticker[symbol] for symbol in ("AMD", "BAC", "DIS")} <= {100, 101}
    assert {client.customer_id for client, instrument, _ in orders if instrument.symbol == "AAPL"} == {
        client.customer_id for client in clients
    }
    sequences: dict[tuple[str, str], list[str]] = {}
    for client, instrument, direction in orders:
        sequences.setdefault((client.customer_id, instrument.symbol), []).append(direction)
    for sequence in sequences.values():
        assert sequence == ["Buy", "Sell"] * (len(sequence) // 2) + ["Buy"] * (len(sequence) % 2)


def test_without_a_hot_ticker_the_mix_goes_round_the_tickers() -> None:
    # given
    clients = [Client("000001", "token"), Client("000002", "token")]
    instruments = [Instrument("AMD", Decimal("100.00")), Instrument("BAC", Decimal("30.00"))]
    mix = OrderMix(clients, instruments)

    # when
    symbols = [mix.order(number)[1].symbol for number in range(4)]

    # then
    assert symbols == ["AMD", "BAC", "AMD", "BAC"]


def test_backlog_is_the_mean_of_the_samples_in_the_window_before_the_mark() -> None:
    # given
    result = LatencyResult(
        sent=0,
        accepted=0,
        latencies=[],
        post_latencies=[],
        missed=0,
        in_flight=[(0.5, 100), (1.1, 2), (1.5, 4), (2.0, 6), (2.1, 100)],
    )

    # when / then: (1.0, 2.0]
    assert result.backlog(2.0) == 4
    assert result.backlog(10.0) is None


# --- latest.json -------------------------------------------------------------------------------------


def a_report() -> Report:
    report = Report()
    for metric, value in [
        (f"{RAW_INSERT} (8 psycopg threads, autocommit)", 8000.0),
        (f"{LOCK_UPDATE_INSERT} (8 threads)", 1600.0),
        (f"{MATCHED} (AAPL, 500 orders)", 400.0),
        ("API orders accepted (201) (8 HTTP clients, 10 s)", 300.0),
        (P50, 30.0),
        (P99, math.inf),
        (UNFILLED, 12.0),
        (f"{NOT_ACCEPTED} (any non-201 or no answer)", 0.0),
        (f"{LIGHT}{P50}", 20.0),
        (f"{LIGHT}{P99}", 45.0),
        (f"{SUSTAINABLE} (open loop)", 200.0),
        ("SQL queries per order, place + route + match + settle", 14.0),
        (RSS_START, 300.0),
        (RSS_END, 330.0),
    ]:
        report.add(Row(metric, value, "unit"))
    report.steps.append(a_step())
    return report


def test_latest_json_has_every_required_figure_read_from_its_row() -> None:
    # given
    report = a_report()

    # when
    summary = report.summary()

    # then
    assert set(JSON_FIGURES) == REQUIRED_KEYS
    assert set(summary) >= REQUIRED_KEYS
    assert summary["raw_insert_per_s"] == 8000
    assert summary["hot_book_matched_per_s"] == 400
    assert summary["latency_100_p50_ms"] == 30
    assert summary["light_p99_ms"] == 45  # the light run's row, not the headline's
    assert summary["queries_per_order"] == 14
    assert summary["worker_rss_mb_end"] == 330
    # a percentile beyond the fill timeout has no number in JSON: null, and named as such
    assert summary["latency_100_p99_ms"] is None
    assert summary["beyond_fill_timeout"] == ["latency_100_p99_ms"]
    assert summary["sustain_steps"][0]["offered_per_s"] == 100


def test_a_figure_whose_phase_failed_is_null() -> None:
    # given: no rows at all
    report = Report()

    # when
    summary = report.summary()

    # then
    assert all(summary[key] is None for key in REQUIRED_KEYS)


def test_write_puts_latest_json_beside_latest_md(tmp_path: Path) -> None:
    # given
    report = a_report()
    report.complete = True

    # when
    paths = report.write(tmp_path)

    # then
    assert [path.name for path in paths] == ["latest.md", "latest.json"]
    data = json.loads((tmp_path / "latest.json").read_text())
    assert set(data) >= REQUIRED_KEYS
    assert "Sustainable rate, per offered rate" in (tmp_path / "latest.md").read_text()


def test_the_acceptance_ratios_are_stated_against_the_baselines() -> None:
    # given
    report = a_report()

    # when
    report.evaluate_aims(rate=100, light_rate=10)

    # then
    text = "\n".join(report.aims)
    assert "sustainable rate >= 0.025 x raw INSERT commits/s (aim 0.06 x): 200.0 vs 200 (0.025 x) -> met" in text
    # at 100 orders/s: the unfilled orders (and the p99 beyond the timeout) fail it
    assert "0 not accepted, 12 unfilled, p99 > 5,000 ms -> NOT met" in text
    assert "hot book matched orders/s >= 0.25 x lock+UPDATE+INSERT/s (aim 1 x): 400.0 vs 400" in text
    assert "SQL queries per order <= 15: 14 -> met" in text
    assert "worker RSS at the end within 20% of its start: 330 MB vs 300 MB (+10%) -> met" in text
    assert len(report.aims) == 7


def test_issue_12s_figures_are_stated_when_measured() -> None:
    # given the aggregation phase's two rows
    report = a_report()
    report.add(Row(f"{AGGREGATION_RATIO} (1,000,000 trades over 250 days)", 1.62, "x"))
    report.add(Row(f"{STATEMENT_PAGE} (250 days shown)", 41.6, "ms"))

    # when
    report.evaluate_aims(rate=100, light_rate=10)
    summary = report.summary()

    # then
    assert "reporting aggregation <= 1.5 x the hand-written GROUP BY: 1.62 x -> NOT met" in report.aims
    assert "customer statement page with a year of days < 100 ms server time: 41.6 ms -> met" in report.aims
    assert (summary["aggregation_vs_group_by"], summary["statement_page_ms"]) == (1.62, 41.6)
