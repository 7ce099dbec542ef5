"""Collecting the figures of one run and rendering them as a Markdown table with machine details."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Names of the two baseline rows, so ratios can be computed against them wherever they were recorded.
RAW_INSERT = "Raw INSERT commits/s"
LOCK_UPDATE_INSERT = "Advisory lock + UPDATE + INSERT on one key"
ACCEPTED = "API orders accepted"
MATCHED = "Matched orders on one hot book"
P99 = "POST-to-fill latency p99"
AIM_RATE = 100.0


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

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def value(self, metric: str) -> float | None:
        # By prefix: the table's metric names carry their parameters, e.g. "(8 threads)".
        return next((row.value for row in self.rows if row.metric.startswith(metric)), None)

    def evaluate_aims(self, *, rate: float) -> None:
        """State each aim against this run's figures. Aims guide later work; they are not gates."""
        insert, lock = self.value(RAW_INSERT), self.value(LOCK_UPDATE_INSERT)
        accepted, matched = self.value(ACCEPTED), self.value(MATCHED)
        p99 = self.value(P99)
        if accepted is not None and insert:
            self.aims.append(
                f"accepted orders/s >= 0.25 x raw INSERT commits/s: {accepted:,.0f} vs {0.25 * insert:,.0f} "
                f"-> {_met(accepted >= 0.25 * insert)}"
            )
        if matched is not None and lock:
            self.aims.append(
                f"matched orders/s on one hot book >= lock+UPDATE+INSERT/s: {matched:,.0f} vs {lock:,.0f} "
                f"-> {_met(matched >= lock)}"
            )
        if p99 is not None:
            at = "" if rate == AIM_RATE else f" (measured at {rate:g}/s, not the aim's {AIM_RATE:g}/s)"
            self.aims.append(f"POST-to-fill p99 <= 50 ms at 100 orders/s: {_number(p99)} ms{at} -> {_met(p99 <= 50)}")

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
        if self.aims:
            lines.append("")
            lines.append("Aims (targets for later work, not gates):")
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

    def write(self, path: Path | None = None) -> Path:
        path = path or RESULTS_DIR / "latest.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Benchmark results\n\n{self.markdown()}")
        return path


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


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


def git_commit() -> str:
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
