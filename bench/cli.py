"""`python -m bench`: one isolated run of every benchmark phase, then a Markdown table.

Phase order is deliberate: the in-process engine and the raw database baselines run before the web
server and worker exist, so they see the machine as a ceiling would. Then, against the full stack:
the hot book (worker only, on an untouched stack), the API load, the latency runs, and the
sustainable-rate climb, with the web server and worker restarted on empty queues before each latency
run and each step of the climb so one run's backlog (and whatever the web process still holds)
cannot bleed into the next.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import baseline, engine_bench, plot, sustain
from bench.memory import worker_rss_mb
from bench.pgstat import PeakConnections
from bench.report import (
    AGGREGATION_RATIO,
    BASE_DIR,
    BASELINE,
    DIAGNOSTIC,
    HEADLINE,
    LIGHT,
    LOCK_UPDATE_INSERT,
    NOT_ACCEPTED,
    RAW_INSERT,
    RSS_END,
    RSS_START,
    STATEMENT_PAGE,
    SUSTAINABLE,
    Report,
    Row,
    git_commit,
)
from bench.stack import Stack, prepare_environment

HOT_TICKER = "AAPL"
# Its own ticker, so the in-process query count leaves the hot book and the API tickers untouched.
QUERY_TICKER = "XOM"
API_TICKERS = 8
# The sustainable-rate climb: a quarter of the orders on the hot ticker, the rest over the API tickers.
HOT_SHARE = 0.25
FILL_TIMEOUT = 5.0
PLOT_PATH = BASE_DIR / "docs" / "performance-capacity.png"


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates are comma-separated numbers, e.g. 25,50,100; not {text!r}") from None
    if any(rate <= 0 for rate in rates) or rates != sorted(rates):
        raise argparse.ArgumentTypeError(f"rates must be positive and rising; not {text!r}")
    return rates


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the broker back office on its own isolated stack. Every option also reads "
        "an environment variable (shown in brackets).",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=_env_float("BENCH_SECONDS", 10),
        help="length of the API load and of the latency run [BENCH_SECONDS, 10]",
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=_env_float("BENCH_BASELINE_SECONDS", 5),
        help="length of each raw database baseline [BENCH_BASELINE_SECONDS, 5]",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=_env_int("BENCH_CONCURRENCY", 8),
        help="HTTP clients and baseline threads [BENCH_CONCURRENCY, 8]",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=_env_float("BENCH_RATE", 100),
        help="orders/s sent in the latency run [BENCH_RATE, 100]",
    )
    parser.add_argument(
        "--light-rate",
        type=float,
        default=_env_float("BENCH_LIGHT_RATE", 10),
        help="orders/s of the light-load latency reference run, half as long [BENCH_LIGHT_RATE, 10]",
    )
    parser.add_argument(
        "--hot-orders",
        type=int,
        default=_env_int("BENCH_HOT_ORDERS", 500),
        help="orders in the hot-book run [BENCH_HOT_ORDERS, 500]",
    )
    parser.add_argument(
        "--hot-timeout",
        type=float,
        default=_env_float("BENCH_HOT_TIMEOUT", 90),
        help="give up on the hot-book drain after this many seconds [BENCH_HOT_TIMEOUT, 90]",
    )
    parser.add_argument(
        "--engine-orders",
        type=int,
        default=_env_int("BENCH_ENGINE_ORDERS", 100_000),
        help="orders submitted to the in-process engine [BENCH_ENGINE_ORDERS, 100000]",
    )
    parser.add_argument(
        "--sustain-rates",
        type=_rates,
        # A string default goes through `type` too, so a bad variable is reported like a bad option.
        default=os.environ.get("BENCH_SUSTAIN_RATES", "25,50,100,200,400,800"),
        help="offered rates (orders/s, rising, comma-separated) of the sustainable-rate climb; empty skips it "
        "[BENCH_SUSTAIN_RATES, 25,50,100,200,400,800]",
    )
    parser.add_argument(
        "--sustain-seconds",
        type=float,
        default=_env_float("BENCH_SUSTAIN_SECONDS", 20),
        help="length of each step of the sustainable-rate climb [BENCH_SUSTAIN_SECONDS, 20]",
    )
    parser.add_argument(
        "--sustain-stop-early",
        action="store_true",
        default=bool(os.environ.get("BENCH_SUSTAIN_STOP_EARLY")),
        help="stop the climb at the first step not sustained (quicker; the capacity plot then has fewer "
        "points) [BENCH_SUSTAIN_STOP_EARLY]",
    )
    parser.add_argument(
        "--plot",
        default=os.environ.get("BENCH_PLOT", str(PLOT_PATH)),
        help="where a complete run draws the capacity plot; empty: nowhere [BENCH_PLOT, docs/performance-capacity.png]",
    )
    parser.add_argument(
        "--aggregation-trades",
        type=int,
        default=_env_int("BENCH_AGGREGATION_TRADES", 1_000_000),
        help="generated trades the reporting aggregation runs over; 0 skips the phase "
        "[BENCH_AGGREGATION_TRADES, 1000000]",
    )
    parser.add_argument("--no-pgbench", action="store_true", help="skip the pgbench reference row")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (database, logs) afterwards")
    return parser.parse_args(argv)


class _Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def log(self, text: str) -> None:
        print(f"[bench {time.monotonic() - self.start:6.1f}s] {text}", file=sys.stderr, flush=True)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _ms_text(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return "> timeout" if math.isinf(seconds) else f"{seconds * 1000:,.0f}"


def _number_mb(megabytes: float | None) -> str:
    return "n/a" if megabytes is None else f"{megabytes:,.0f} MB"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Same path as Ctrl-C, so `kill <pid>` also runs the teardown.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    git_commit()  # the code measured: read now, before the run draws its plot into the tree
    clock = _Clock()
    run_dir = prepare_environment()
    signal.signal(signal.SIGTERM, _on_sigterm)
    stack = Stack(run_dir, keep=options.keep, log=clock.log)
    report = Report()
    interrupted = False
    try:
        _run_phases(options, stack, report, clock)
        report.complete = not report.failures
    except KeyboardInterrupt:
        interrupted = True
        clock.log("interrupted: tearing down")
    except Exception:  # set-up failed: nothing more to measure, but the teardown below must still run
        clock.log(f"set-up failed:\n{traceback.format_exc()}")
        report.note("set-up failed: " + traceback.format_exc().strip().splitlines()[-1])
    finally:
        clock.log("stopping the stack")
        for problem in stack.teardown():
            report.note(f"teardown problem: {problem}")
        clock.log("stopped")
    if report.complete and report.steps and options.plot:
        try:
            path = _plot(report, Path(options.plot))
            clock.log(f"drew {path}")
        except Exception as error:  # the figures are still worth printing and keeping
            clock.log(f"capacity plot failed:\n{traceback.format_exc()}")
            report.note(f"capacity plot failed: {error!r}")
            report.complete = False
    print(report.markdown())
    if report.complete:
        for path in report.write():
            clock.log(f"wrote {path}")
    return 130 if interrupted else (0 if report.complete else 1)


def _plot(report: Report, path: Path) -> Path:
    return plot.capacity(
        steps=report.steps,
        sustainable=sustain.sustainable_rate(report.steps),
        path=path,
        title=(
            f"Capacity: POST-to-fill latency and accepted orders/s against the offered rate\n"
            f"{report.started_at:%Y-%m-%d} UTC, git {git_commit()}"
        ),
        footer=report.machine_line(),
    )


def _phase(report: Report, clock: _Clock, name: str, body: Callable[[], None]) -> None:
    """Run one phase; a failure is recorded and the remaining phases still run."""
    clock.log(f"{name} ...")
    try:
        body()
    except KeyboardInterrupt:
        raise
    except Exception as error:
        clock.log(f"{name} failed:\n{traceback.format_exc()}")
        report.failures.append(name)
        report.note(f"{name} failed: {error!r}")


def _run_phases(options: argparse.Namespace, stack: Stack, report: Report, clock: _Clock) -> None:
    concurrency: int = options.concurrency
    report.extra["parameters"] = vars(options)

    def engine() -> None:
        result = engine_bench.run(orders=options.engine_orders)
        report.add(Row("Pure engine: LitBook.submit, in-process", result.orders_per_second, "orders/s", vs_insert=True))
        report.note(
            f"Engine: {result.orders:,} seeded-random orders (80% limit Day, 20% market IOC) against a book of "
            f"{result.resting_before} resting orders (20 levels a side); {result.fills:,} fills; "
            f"{result.resting_after:,} orders resting at the end; {result.seconds:.2f} s."
        )

    # The engine needs no services: measure it first, on a quiet machine.
    _phase(report, clock, "pure engine", engine)

    clock.log(f"starting embedded services in {stack.run_dir} (migrate + seed)")
    stack.start_services()

    # Django is configured only now (the settings start the embedded Postgres), hence the late imports.
    from django.conf import settings
    from django.db import connection

    # The project logs at INFO; one line per HTTP request from the load generator would drown the output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        report.postgres_version = f"PostgreSQL {cursor.fetchone()[0]}"
    info = baseline.ConnectionInfo.from_django(settings.DATABASES["default"])
    baseline.create_tables(info)

    def raw_insert() -> None:
        rate = baseline.insert_commits_per_second(info, threads=concurrency, seconds=options.baseline_seconds)
        report.add(Row(f"{RAW_INSERT} ({concurrency} psycopg threads, autocommit)", rate, "commits/s", group=BASELINE))

    def pgbench() -> None:
        rate = baseline.pgbench_insert_per_second(info, clients=concurrency, seconds=options.baseline_seconds)
        if rate is None:
            report.note("pgbench not found: reference row skipped.")
            return
        report.add(
            Row(
                f"pgbench INSERT commits/s ({concurrency} clients; reference only)",
                rate,
                "commits/s",
                vs_insert=True,
                group=BASELINE,
            )
        )

    def lock_update_insert() -> None:
        rate = baseline.lock_update_insert_per_second(info, threads=concurrency, seconds=options.baseline_seconds)
        report.add(Row(f"{LOCK_UPDATE_INSERT} ({concurrency} threads)", rate, "tx/s", vs_insert=True, group=BASELINE))

    _phase(report, clock, "raw INSERT baseline", raw_insert)
    if not options.no_pgbench:
        _phase(report, clock, "pgbench INSERT reference", pgbench)
    _phase(report, clock, "lock + UPDATE + INSERT baseline", lock_update_insert)
    try:
        baseline.drop_tables(info)
    except Exception as error:  # cosmetic: only an external database keeps the scratch tables
        report.note(f"could not drop the scratch tables: {error!r}")

    def query_counts() -> None:
        from bench import queries

        result = queries.run(symbol=QUERY_TICKER, orders=20)
        steps = "place + route + match + settle"
        report.add(
            Row(
                f"SQL queries per order, {steps} (in-process, amortized over a batch of {result.orders})",
                result.per_order,
                "queries",
                group=DIAGNOSTIC,
            )
        )
        report.add(
            Row(
                f"Service time per order, {steps} (in-process, 1 thread, no Celery)",
                result.seconds_per_order * 1000,
                "ms",
                group=DIAGNOSTIC,
            )
        )
        report.note(
            f"Queries ({result.orders} crossing orders on {QUERY_TICKER} as one batch, one thread, no Celery), "
            f"per order: place {result.place:.1f}, route {result.route:.1f}, match {result.match:.1f} "
            f"({result.books} book matches), settle {result.settle:.1f} ({result.trades} trades); "
            f"{result.seconds_per_order * 1000:.1f} ms of service calls per order, i.e. at most "
            f"{1 / result.seconds_per_order:.0f} orders/s per worker process before any Celery overhead."
        )

    _phase(report, clock, "SQL queries per order", query_counts)

    from broker.celery import app

    # The query count above committed orders whose route/match tasks are now queued; they are done
    # already (the worker would find nothing to do), so they must not count against the next phase.
    app.control.purge()
    clock.log("starting web server and worker")
    stack.start_children()

    # Worker memory: once on the fresh stack, before every restart, and at the end (see the note).
    memory: list[tuple[str, float | None]] = []

    def remember_memory(when: str) -> float | None:
        megabytes = worker_rss_mb(stack.children)
        memory.append((when, megabytes))
        return megabytes

    report.add(
        Row(
            f"{RSS_START} of the stack phases (all worker processes)",
            remember_memory("start, on the fresh stack before the hot book"),
            "MB",
            group=DIAGNOSTIC,
        )
    )
    from bench import api_load, breakdown, hotbook
    from broker import services as broker_services
    from broker.models import Customer, Ticker

    customers = list(Customer.objects.order_by("customer_id").values_list("customer_id", flat=True))
    clients = [
        api_load.Client(customer_id, broker_services.api_token_for_customer(customer_id=customer_id).key)
        for customer_id in customers
    ]
    staff_token = broker_services.api_token_for_staff(username="bench").key
    instruments = [
        api_load.Instrument(ticker.symbol, ticker.reference_price)
        for ticker in Ticker.objects.exclude(symbol__in=(HOT_TICKER, QUERY_TICKER))
        .exclude(reference_price=None)
        .order_by("symbol")
        if ticker.reference_price is not None
    ][:API_TICKERS]

    def reset(after: str) -> None:
        clock.log(f"restarting web server and worker after {after}")
        remember_memory(f"after {after}, before the restart")
        dropped = stack.reset()
        if dropped:
            report.note(
                f"After {after}: {dropped:,} queued tasks (the worker's backlog) dropped before the next phase."
            )

    # The hot book goes first among the stack phases: it needs only the worker, and it runs on a
    # stack no HTTP load has touched yet.
    def hot_book() -> None:
        with PeakConnections(info) as connections:
            result = hotbook.run(symbol=HOT_TICKER, orders=options.hot_orders, timeout=options.hot_timeout)
        label = f"Matched orders on one hot book ({HOT_TICKER}, {result.orders:,} orders, quantity {hotbook.QUANTITY})"
        report.add(Row(label, result.orders_per_second, "orders/s", vs_insert=True, vs_lock=True))
        statuses = ", ".join(f"{status}: {count}" for status, count in result.statuses.most_common())
        venues = ", ".join(f"{venue}: {count}" for venue, count in result.venues.most_common())
        report.note(
            f"Hot book: {result.orders - result.pending:,} of {result.orders:,} orders done in {result.seconds:.1f} s"
            f"{'' if result.finished else ' (TIMED OUT: the rate counts only the finished ones)'}; "
            f"statuses {statuses}; child orders per venue {venues}; {result.trades:,} trades booked; "
            f"{connections.describe()}."
        )
        if not result.finished:
            report.failures.append("hot book (timed out)")
            reset("the unfinished hot book")

    _phase(report, clock, f"matched orders/s on one hot book ({options.hot_orders} orders)", hot_book)

    def accepted() -> None:
        with PeakConnections(info) as connections:
            result = api_load.accepted_orders(
                base_url=stack.base_url,
                clients=clients[:concurrency],
                instruments=instruments,
                concurrency=concurrency,
                seconds=options.seconds,
            )
        report.add(
            Row(
                f"API orders accepted (201) ({concurrency} HTTP clients, {options.seconds:g} s)",
                result.accepted_per_second,
                "orders/s",
                vs_insert=True,
            )
        )
        report.add(Row("API errors (any non-201) in that window", sum(result.errors.values()), "responses"))
        errors = ", ".join(f"{kind}: {count}" for kind, count in result.errors.most_common()) or "none"
        report.note(
            f"API load: {result.accepted:,} orders accepted in {result.seconds:g} s over "
            f"{len(instruments)} tickers ({', '.join(i.symbol for i in instruments)}), the worker draining "
            f"alongside; errors: {errors}; {connections.describe()}."
        )

    _phase(report, clock, "API accepted orders/s", accepted)
    _phase(report, clock, "restart after API load", lambda: reset("the API load"))

    def latency(rate: float, seconds: float, prefix: str) -> None:
        cpu_before = breakdown.cpu_seconds(stack.children, stack.run_dir)
        with PeakConnections(info) as connections:
            result = api_load.post_to_fill(
                base_url=stack.base_url,
                ws_url=stack.ws_url,
                staff_token=staff_token,
                clients=clients,
                instruments=instruments,
                rate=rate,
                seconds=seconds,
                fill_timeout=FILL_TIMEOUT,
            )
        p50, p99 = result.percentile_over_sent(0.50), result.percentile_over_sent(0.99)
        unit = f"ms at {rate:g} orders/s"
        # The light-load reference is a diagnostic; the run at the aim's rate is a headline figure.
        group = DIAGNOSTIC if prefix else HEADLINE
        report.add(Row(f"{prefix}POST-to-fill latency p50", _ms(p50), unit, group=group))
        report.add(Row(f"{prefix}POST-to-fill latency p99", _ms(p99), unit, group=group))
        not_accepted = result.sent - result.accepted
        missed_unit = f"of {result.sent:,} sent ({not_accepted:,} of them not accepted)"
        report.add(Row(f"{prefix}Orders with no fill within 5 s", result.unfilled, missed_unit, group=group))
        report.add(
            Row(f"{prefix}{NOT_ACCEPTED} (any non-201 or no answer)", not_accepted, f"of {result.sent:,}", group=group)
        )
        post50 = api_load.percentile(result.post_latencies, 0.50)
        post99 = api_load.percentile(result.post_latencies, 0.99)
        report.add(
            Row(
                f"{prefix}POST-to-201 latency p50 / p99 (same run)",
                _ms(post50),
                f"ms / {_ms_text(post99)} ms",
                group=DIAGNOSTIC,
            )
        )
        errors = ", ".join(f"{kind}: {count}" for kind, count in result.errors.most_common()) or "none"
        report.note(
            f"{prefix or 'Latency run: '}{result.sent:,} marketable orders (Buy and Sell in turn per customer "
            f"and ticker) sent open-loop at "
            f"{result.achieved_rate:.1f}/s for {seconds:g} s, {result.accepted:,} accepted (201), "
            f"{len(result.latencies):,} filled within 5 s; errors: {errors}; {connections.describe()}"
            f"{'; fill stream ' + result.stream_closed if result.stream_closed else ''}."
        )
        # Where the time and the CPU went (bench.breakdown): read after the run, the stack still up.
        cpu_after = breakdown.cpu_seconds(stack.children, stack.run_dir)
        times = breakdown.order_times(sent=result.sent_wall, received=result.received_wall)
        report.note(
            f"{prefix or 'Latency run: '}{breakdown.describe_stages(times)}; "
            f"{breakdown.describe_cpu(cpu_before, cpu_after, result.sent)}."
        )

    # A light-load run first, as a reference: the pipeline's own latency with nothing queued, which
    # tells queueing (at the aim's rate) apart from per-order cost.
    light_seconds = max(1.0, options.seconds / 2)
    _phase(
        report,
        clock,
        "POST-to-fill latency, light load",
        lambda: latency(options.light_rate, light_seconds, LIGHT),
    )
    # The light run leaves no backlog, but the web process may still hold its database connections.
    _phase(report, clock, "restart after the light-load run", lambda: reset("the light-load run"))
    _phase(report, clock, "POST-to-fill latency", lambda: latency(options.rate, options.seconds, ""))

    def sustainable() -> None:
        seconds: float = options.sustain_seconds
        hot_ticker = Ticker.objects.get(symbol=HOT_TICKER)
        assert hot_ticker.reference_price is not None
        hot = api_load.Instrument(hot_ticker.symbol, hot_ticker.reference_price)
        remember_memory("after the latency run, before the restart")
        for rate in options.sustain_rates:
            clock.log(f"sustainable rate: restarting, then {rate:g} orders/s for {seconds:g} s")
            dropped = stack.reset()
            with PeakConnections(info) as connections:
                result = api_load.post_to_fill(
                    base_url=stack.base_url,
                    ws_url=stack.ws_url,
                    staff_token=staff_token,
                    clients=clients,
                    instruments=instruments,
                    rate=rate,
                    seconds=seconds,
                    fill_timeout=FILL_TIMEOUT,
                    hot=hot,
                    hot_share=HOT_SHARE,
                )
            mark = sustain.early_mark(seconds)
            step = sustain.Step(
                offered_per_s=rate,
                seconds=seconds,
                sent=result.sent,
                accepted=result.accepted,
                filled=len(result.latencies),
                p50_s=result.percentile_over_sent(0.50),
                p99_s=result.percentile_over_sent(0.99),
                achieved_send_per_s=result.achieved_rate,
                send_lag_p99_s=api_load.percentile(result.send_lags, 0.99),
                generator_cpu=result.generator_cpu,
                backlog_early=result.backlog(mark),
                backlog_end=result.backlog(seconds),
                early_mark_s=mark,
                errors=dict(result.errors),
                dropped_at_restart=dropped,
                worker_rss_mb=worker_rss_mb(stack.children),
                peak_connections=connections.peak,
            )
            report.steps.append(step)
            shortfalls = step.shortfalls()
            clock.log(
                f"  {rate:g}/s: sent {step.sent:,} at {step.achieved_send_per_s:.1f}/s, accepted {step.accepted:,}, "
                f"filled {step.filled:,}, p50 {_ms_text(step.p50_s)} ms, p99 {_ms_text(step.p99_s)} ms -> "
                + ("sustained" if not shortfalls else "not sustained: " + "; ".join(shortfalls))
            )
            if shortfalls and options.sustain_stop_early:
                break
        steps = report.steps
        best = sustain.sustainable_rate(steps)
        report.add(
            Row(
                f"{SUSTAINABLE} (open loop, {1 - HOT_SHARE:.0%} over {len(instruments)} tickers + {HOT_SHARE:.0%} on "
                f"{HOT_TICKER}; all accepted, all filled <= 5 s, p99 <= 100 ms, no growing backlog)",
                best,
                "orders/s",
                vs_insert=True,
            )
        )
        last = steps[-1]
        not_run = [f"{rate:g}" for rate in options.sustain_rates[len(steps) :]]
        failed = [f"{step.offered_per_s:g}" for step in steps if not step.sustained]
        if not_run:
            stopped = (
                f"stopped climbing after {last.offered_per_s:g}/s, the first step not sustained "
                f"({', '.join(not_run)}/s not run)"
            )
        elif failed:
            stopped = f"every step run (for the capacity plot); not sustained at {', '.join(failed)}/s"
        else:
            stopped = "every step sustained"
        lagging = [step for step in steps if not step.generator_kept_up]
        generator = (
            "the load generator kept up at every step (achieved send rate >= "
            f"{sustain.GENERATOR_KEEPS_UP:.0%} of the offered rate)"
            if not lagging
            else "the LOAD GENERATOR could not keep up at "
            + ", ".join(
                f"{step.offered_per_s:g}/s (sent {step.achieved_send_per_s:.0f}/s, {step.generator_cpu:.0%} of a "
                "core in the bench process)"
                for step in lagging
            )
            + ": that rate was not offered (below one core, the stack's processes took the CPUs from the "
            "bench; near a whole core, the generator itself is the limit)"
        )
        errors = Counter[str]()
        for step in steps:
            errors.update(step.errors)
        report.note(
            f"Sustainable rate: {best:g} orders/s; {stopped}. Each step: the web server and worker restarted on "
            f"empty queues, then marketable orders (quantity 100, limit 2% through the reference, Buy and Sell "
            f"in turn per customer and ticker) sent open-loop for {seconds:g} s, {HOT_SHARE:.0%} of them on "
            f"{HOT_TICKER} and the rest over {', '.join(i.symbol for i in instruments)}; POST-to-fill "
            f"percentiles over every order sent (unfilled within {FILL_TIMEOUT:g} s = infinite); in flight = "
            f"orders sent and neither answered with an error nor filled yet, averaged over the second before "
            f"{sustain.early_mark(seconds):g} s and over the last second of sending (the end may exceed the "
            f"early backlog by rate x 100 ms: queueing delay grown by less than the p99 bar); {generator}; "
            f"errors over all steps: "
            f"{', '.join(f'{kind}: {count}' for kind, count in errors.most_common()) or 'none'}."
        )

    if options.sustain_rates:
        _phase(report, clock, "sustainable rate", sustainable)

    # The last stack phase is over: measure before the teardown stops the workers.
    end = remember_memory("end, after the last stack phase")
    report.add(Row(f"{RSS_END} of the stack phases (all worker processes)", end, "MB", group=DIAGNOSTIC))
    report.extra["worker_rss_mb_log"] = [{"when": when, "mb": megabytes} for when, megabytes in memory]
    report.note(
        "Worker RSS: the sum of RSS over every process of every Celery worker tree the bench started (prefork "
        "parents and pool children; shared pages count once per process), in MB. Start: the fresh workers, "
        "before the hot book; end: after the last stack phase, before the teardown. The workers are restarted "
        "before each latency run and each sustainable-rate step, so the end figure is of workers that ran only "
        "the last step; the longest-lived ones are measured before the first restart. Every measurement: "
        + "; ".join(f"{when}: {_number_mb(megabytes)}" for when, megabytes in memory)
        + "."
    )

    def reporting_aggregation() -> None:
        from bench import aggregation

        result = aggregation.run(trades=options.aggregation_trades)
        report.add(
            Row(
                f"{AGGREGATION_RATIO} ({result.trades:,} trades over {result.days} days: product / hand-written "
                "GROUP BY)",
                result.ratio,
                "x",
            )
        )
        report.note(
            f"Aggregation: {result.trades:,} generated trades over the last {result.days} XNYS sessions up to "
            f"{aggregation.LAST_BAR_DAY} loaded with COPY in {result.load_seconds:.1f} s; the product's "
            f"`days_aggregate` over every day took {result.product_seconds:.2f} s ({result.rows:,} rows "
            f"written), the three hand-written INSERT ... SELECT ... GROUP BY over the same rows "
            f"{result.baseline_seconds:.2f} s (bench/aggregation.py)."
        )
        report.add(Row(f"{STATEMENT_PAGE} ({result.statement_days} days shown)", result.statement_ms, "ms"))
        report.note(
            f"Statement page: the customer statement screen for the customer with the most stored days over the "
            f"whole generated range, requested in-process through Django's middleware, view and template as a "
            f"Trader; median of {aggregation.STATEMENT_REQUESTS} requests after 3 warm-up ones: "
            f"{result.statement_ms:.1f} ms, against {result.statement_select_ms:.2f} ms for a raw SELECT of the "
            f"same {result.statement_days} stored day rows (the query count is pinned in "
            f"tests/reporting/test_report_screens.py)."
        )

    # Last: a million more trades would weigh on every phase after it. With the stack stopped first: the
    # last climb step leaves thousands of orders that the workers would go on draining beside it.
    if options.aggregation_trades:
        dropped = stack.quiet()
        report.note(f"Before the aggregation: web and workers stopped, {dropped} queued tasks dropped.")
        _phase(report, clock, "reporting aggregation", reporting_aggregation)
    report.evaluate_aims(rate=options.rate, light_rate=options.light_rate)
