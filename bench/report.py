"""Collecting the figures of one run and rendering them as a Markdown table with machine details."""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.sustain import Step

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Names of the two baseline rows, so ratios can be computed against them wherever they were recorded.
RAW_INSERT = "Raw INSERT commits/s"
LOCK_UPDATE_INSERT = "Advisory lock + UPDATE + INSERT on one key"
ACCEPTED = "API orders accepted"
MATCHED = "Matched orders on one hot book"
P50 = "POST-to-fill latency p50"
P99 = "POST-to-fill latency p99"
UNFILLED = "Orders with no fill within 5 s"
NOT_ACCEPTED = "Orders not accepted"
# Prefix of the light-load reference run's rows (same names as the run at the aim's rate otherwise).
LIGHT = "Light load: "
SUSTAINABLE = "Sustainable rate"
AGGREGATION_RATIO = "Reporting aggregation time vs hand-written GROUP BY"
STATEMENT_PAGE = "Customer statement page, a year of days: server time"
QUERIES = "SQL queries per order"
RSS_START = "Worker RSS at start"
RSS_END = "Worker RSS at end"
AIM_RATE = 100.0
LIGHT_AIM_RATE = 10.0

# latest.json: the figures later work is judged by, each read from its table row by metric prefix.
JSON_FIGURES = {
    "raw_insert_per_s": RAW_INSERT,
    "lock_update_insert_per_s": LOCK_UPDATE_INSERT,
    "hot_book_matched_per_s": MATCHED,
    "api_accepted_per_s": ACCEPTED,
    "latency_100_p50_ms": P50,
    "latency_100_p99_ms": P99,
    "latency_100_unfilled": UNFILLED,
    "light_p99_ms": LIGHT + P99,
    "sustainable_rate_per_s": SUSTAINABLE,
    "queries_per_order": QUERIES,
    "worker_rss_mb_start": RSS_START,
    "worker_rss_mb_end": RSS_END,
    "aggregation_vs_group_by": AGGREGATION_RATIO,
    "statement_page_ms": STATEMENT_PAGE,
}


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    value: float | None  # None: the phase did not produce the figure (it failed or was skipped)
    unit: str
    # Only throughputs are meaningful as a fraction of a commit rate; latencies and counts are not.
    vs_insert: bool = False
    vs_lock: bool = False
    # Presentation order, whatever order the phases ran in: baselines, headline figures, diagnostics.
    group: int = 1


BASELINE, HEADLINE, DIAGNOSTIC = 0, 1, 2


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    postgres_version: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    complete: bool = False
    failures: list[str] = field(default_factory=list)
    aims: list[str] = field(default_factory=list)
    # The sustainable-rate phase, one entry per offered rate that ran.
    steps: list[Step] = field(default_factory=list)
    # Anything else worth keeping in latest.json (run parameters, the worker memory log).
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def value(self, metric: str) -> float | None:
        # By prefix: the table's metric names carry their parameters, e.g. "(8 threads)".
        return next((row.value for row in self.rows if row.metric.startswith(metric)), None)

    def evaluate_aims(self, *, rate: float, light_rate: float) -> None:
        """State each acceptance figure of issues 11 and 12 against this run's figures. Not gates: the exit code
        says only whether every phase ran."""
        insert, lock = self.value(RAW_INSERT), self.value(LOCK_UPDATE_INSERT)
        sustainable, accepted, matched = self.value(SUSTAINABLE), self.value(ACCEPTED), self.value(MATCHED)
        if sustainable is not None and insert:
            self._ratio_aim("sustainable rate", sustainable, "raw INSERT commits/s", insert, floor=0.025, aim=0.06)
        p99, unfilled, not_accepted = self.value(P99), self.value(UNFILLED), self.value(NOT_ACCEPTED)
        if p99 is not None and unfilled is not None and not_accepted is not None:
            at = "" if rate == AIM_RATE else f" (measured at {rate:g}/s)"
            met = not_accepted == 0 and unfilled == 0 and p99 <= 100
            self.aims.append(
                f"at {AIM_RATE:g} orders/s{at}: 0 errors, 0 unfilled, POST-to-fill p99 <= 100 ms (aim 50 ms): "
                f"{_number(not_accepted)} not accepted, {_number(unfilled)} unfilled, p99 {_number(p99)} ms "
                f"-> {_met(met)}{_aim_met(met and p99 <= 50)}"
            )
        light_p99 = self.value(LIGHT + P99)
        if light_p99 is not None:
            at = "" if light_rate == LIGHT_AIM_RATE else f" (measured at {light_rate:g}/s)"
            self.aims.append(
                f"at {LIGHT_AIM_RATE:g} orders/s{at}: POST-to-fill p99 <= 50 ms: {_number(light_p99)} ms "
                f"-> {_met(light_p99 <= 50)}"
            )
        if matched is not None and lock:
            self._ratio_aim("hot book matched orders/s", matched, "lock+UPDATE+INSERT/s", lock, floor=0.25, aim=1.0)
        if accepted is not None and insert:
            self._ratio_aim("API accepted orders/s", accepted, "raw INSERT commits/s", insert, floor=0.03, aim=0.1)
        queries = self.value(QUERIES)
        if queries is not None:
            self.aims.append(f"SQL queries per order <= 15: {_number(queries)} -> {_met(queries <= 15)}")
        rss_start, rss_end = self.value(RSS_START), self.value(RSS_END)
        if rss_start and rss_end is not None:
            self.aims.append(
                f"worker RSS at the end within 20% of its start: {rss_end:,.0f} MB vs {rss_start:,.0f} MB "
                f"({rss_end / rss_start - 1:+.0%}) -> {_met(rss_end <= 1.2 * rss_start)}"
            )
        # Issue 12's two figures.
        aggregation, statement = self.value(AGGREGATION_RATIO), self.value(STATEMENT_PAGE)
        if aggregation is not None:
            self.aims.append(
                f"reporting aggregation <= 1.5 x the hand-written GROUP BY: {aggregation:.2f} x "
                f"-> {_met(aggregation <= 1.5)}"
            )
        if statement is not None:
            self.aims.append(
                f"customer statement page with a year of days < 100 ms server time: {statement:.1f} ms "
                f"-> {_met(statement < 100)}"
            )

    def _ratio_aim(self, what: str, value: float, of: str, baseline: float, *, floor: float, aim: float) -> None:
        ratio = value / baseline
        self.aims.append(
            f"{what} >= {floor:g} x {of} (aim {aim:g} x): {value:,.1f} vs {floor * baseline:,.0f} "
            f"({ratio:.3f} x) -> {_met(ratio >= floor)}{_aim_met(ratio >= aim)}"
        )

    def markdown(self) -> str:
        insert = self.value(RAW_INSERT)
        lock = self.value(LOCK_UPDATE_INSERT)
        lines = [
            "| Metric | Value | Unit | x raw INSERT commits/s | x lock+UPDATE+INSERT/s |",
            "|---|---:|---|---:|---:|",
        ]
        for row in sorted(self.rows, key=lambda row: row.group):
            lines.append(
                f"| {row.metric} | {_number(row.value)} | {row.unit} | "
                f"{_ratio(row.value, insert) if row.vs_insert else '-'} | "
                f"{_ratio(row.value, lock) if row.vs_lock else '-'} |"
            )
        lines.append("")
        lines.append(self.machine_line())
        if self.steps:
            lines.append("")
            lines.extend(self.steps_markdown())
        if self.aims:
            lines.append("")
            lines.append("Acceptance ratios of issue 11 (stated, not gates):")
            lines.extend(f"- {text}" for text in self.aims)
        if not self.complete:
            lines.append("")
            lines.append("**Incomplete run**: some phases did not finish; see the notes.")
        if self.notes:
            lines.append("")
            lines.append("Notes:")
            lines.extend(f"- {text}" for text in self.notes)
        return "\n".join(lines) + "\n"

    def machine_line(self) -> str:
        parts = [
            f"Date: {self.started_at:%Y-%m-%d %H:%M} UTC",
            f"machine: {machine_summary()}",
            f"Python {platform.python_version()}",
        ]
        if self.postgres_version:
            parts.append(self.postgres_version)
        parts.append(f"git {git_commit()}")
        return "; ".join(parts) + "."

    def steps_markdown(self) -> list[str]:
        lines = [
            "Sustainable rate, per offered rate (open loop; each step on a freshly restarted stack):",
            "",
            "| offered/s | sent/s | sent | accepted | filled <= 5 s | p50 ms | p99 ms | accepted/s "
            "| in flight early / end | generator CPU | worker RSS MB | sustained |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
        ]
        for step in self.steps:
            verdict = "yes" if step.sustained else "no: " + "; ".join(step.shortfalls())
            lines.append(
                f"| {step.offered_per_s:g} | {step.achieved_send_per_s:,.1f} | {step.sent:,} | {step.accepted:,} "
                f"| {step.filled:,} | {_number(_ms(step.p50_s))} | {_number(_ms(step.p99_s))} "
                f"| {step.accepted_per_s:,.1f} | {_number(step.backlog_early)} / {_number(step.backlog_end)} "
                f"| {step.generator_cpu:.0%} | {_number(step.worker_rss_mb)} | {verdict} |"
            )
        return lines

    def summary(self) -> dict[str, Any]:
        """latest.json: the figures of JSON_FIGURES (null when their phase failed), then the rest."""
        data: dict[str, Any] = {}
        beyond_timeout: list[str] = []
        for key, metric in JSON_FIGURES.items():
            value = self.value(metric)
            if value is not None and math.isinf(value):
                # JSON has no infinity: the percentile fell on orders not filled within the timeout.
                beyond_timeout.append(key)
                value = None
            data[key] = value
        data.update(
            beyond_fill_timeout=beyond_timeout,
            date=self.started_at.isoformat(timespec="seconds"),
            git=git_commit(),
            machine=machine_summary(),
            python=platform.python_version(),
            postgres=self.postgres_version,
            complete=self.complete,
            failures=self.failures,
            sustain_steps=[step.as_json() for step in self.steps],
            aims=self.aims,
            rows=[
                {
                    "metric": row.metric,
                    "value": None if row.value is None or math.isinf(row.value) else row.value,
                    "unit": row.unit,
                }
                for row in self.rows
            ],
            notes=self.notes,
        )
        data.update(self.extra)
        return data

    def write(self, directory: Path | None = None) -> list[Path]:
        """latest.md (the table as printed) and latest.json (the same figures for scripts)."""
        directory = directory or RESULTS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        markdown = directory / "latest.md"
        markdown.write_text(f"# Benchmark results\n\n{self.markdown()}")
        summary = directory / "latest.json"
        summary.write_text(json.dumps(self.summary(), indent=2, allow_nan=False) + "\n")
        return [markdown, summary]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _aim_met(ok: bool) -> str:
    return " (aim met)" if ok else " (aim not met)"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        # A latency percentile that falls on orders never filled within the timeout (5 s).
        return "> 5,000"
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _ratio(value: float | None, baseline: float | None) -> str:
    if value is None or not baseline:
        return "n/a"
    return f"{value / baseline:.3f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def machine_summary() -> str:
    # The CPUs this process may run on, which is what the stack actually gets in a container.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = memory_gib()
    memory_text = f", {memory:.0f} GiB RAM" if memory is not None else ""
    return f"{cpus} vCPU ({cpu_model()}){memory_text}, {platform.system()} {platform.release()}"


@functools.cache
def git_commit() -> str:
    """The commit measured, as of the run's start (`bench.cli.main` asks first): the run itself writes
    docs/performance-capacity.png, a tracked file, before the report is written."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    # A dirty tree means the figures are for uncommitted code: say so rather than imply the commit.
    return f"{commit}{' + uncommitted changes' if dirty else ''}"
