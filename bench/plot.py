"""The capacity plot: POST-to-fill p50/p99 and accepted/s against the offered rate, one point per step."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from bench.sustain import P99_LIMIT_SECONDS, Step

# Where a percentile that fell on an unfilled order is drawn: at the fill timeout, marked apart.
TIMEOUT_MS = 5000.0


def capacity(*, steps: list[Step], sustainable: float, path: Path, title: str, footer: str) -> Path:
    # Agg: no display on a server, and no GUI toolkit to import.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, ScalarFormatter

    offered = [step.offered_per_s for step in steps]
    figure, latency_axis = pyplot.subplots(figsize=(10, 5.6))
    for label, values, color in (
        ("POST-to-fill p50", [step.p50_s for step in steps], "tab:blue"),
        ("POST-to-fill p99", [step.p99_s for step in steps], "tab:red"),
    ):
        finite = [(x, y * 1000) for x, y in zip(offered, values, strict=True) if y is not None and not math.isinf(y)]
        beyond = [x for x, y in zip(offered, values, strict=True) if y is not None and math.isinf(y)]
        if finite:
            latency_axis.plot(*zip(*finite, strict=True), marker="o", color=color, label=f"{label} (ms)")
        if beyond:
            latency_axis.scatter(
                beyond, [TIMEOUT_MS] * len(beyond), marker="^", color=color, label=f"{label}: no fill within 5 s"
            )
    latency_axis.axhline(P99_LIMIT_SECONDS * 1000, color="tab:red", linestyle=":", linewidth=1, label="p99 bar, 100 ms")
    latency_axis.set_yscale("log")
    # Plain numbers (20, 100, 5000), not powers of ten; between decades only 2x and 5x are labelled.
    latency_axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    latency_axis.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    latency_axis.set_ylabel("POST-to-fill latency (ms, log scale)")
    latency_axis.set_xlabel("offered rate (orders/s, log scale)")
    latency_axis.set_xscale("log", base=2)
    latency_axis.xaxis.set_major_locator(FixedLocator(offered))
    latency_axis.xaxis.set_minor_locator(NullLocator())
    latency_axis.xaxis.set_major_formatter(ScalarFormatter())
    latency_axis.grid(True, which="both", alpha=0.3)

    rate_axis = latency_axis.twinx()
    for label, rates, linestyle, color in (
        ("accepted/s (201)", [step.accepted_per_s for step in steps], "-", "tab:green"),
        ("filled within 5 s, per s", [step.filled_per_s for step in steps], "--", "tab:olive"),
    ):
        # A log axis has no zero: a step that filled nothing is left out of the line.
        points = [(x, y) for x, y in zip(offered, rates, strict=True) if y > 0]
        if points:
            rate_axis.plot(*zip(*points, strict=True), marker="s", linestyle=linestyle, color=color, label=label)
    rate_axis.plot(offered, offered, color="grey", linewidth=0.8, linestyle="-.", label="offered (y = x)")
    rate_axis.set_yscale("log", base=2)
    # The offered rates as ticks on both axes, so the y = x line reads straight across.
    rate_axis.yaxis.set_major_locator(FixedLocator(offered))
    rate_axis.yaxis.set_minor_locator(NullLocator())
    rate_axis.yaxis.set_major_formatter(ScalarFormatter())
    rate_axis.set_ylabel("orders/s (log scale)")
    if sustainable:
        latency_axis.axvline(sustainable, color="black", linewidth=1, alpha=0.5)
        latency_axis.annotate(
            f"sustainable: {sustainable:g}/s",
            (sustainable, P99_LIMIT_SECONDS * 1000),
            textcoords="offset points",
            xytext=(4, 8),
            fontsize=8,
        )

    handles, labels = latency_axis.get_legend_handles_labels()
    more_handles, more_labels = rate_axis.get_legend_handles_labels()
    # Outside the axes, right of the rate axis: inside, it would hide points wherever they fall.
    latency_axis.legend(
        handles + more_handles, labels + more_labels, loc="upper left", bbox_to_anchor=(1.1, 1), fontsize=8
    )
    latency_axis.set_title(title, fontsize=10)
    figure.text(0.01, 0.01, "\n".join(textwrap.wrap(footer, 160)), fontsize=7, va="top")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)
    return path


def _two_and_five(value: float, _position: int) -> str:
    mantissa = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
    return f"{value:g}" if mantissa in (2, 5) else ""
