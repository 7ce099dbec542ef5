"""Resident memory of the stack's Celery workers, for the "worker memory at the end within 20% of its
start" check: a worker that keeps a per-process cache (books, venues, tickers) must not grow with load.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

import psutil

MIB = 1024 * 1024


def worker_rss_mb(children: Mapping[str, subprocess.Popen[bytes]]) -> float | None:
    """Sum of RSS over every process of every worker tree (children named "worker..."), in MiB.

    Every process of the tree counts: the prefork pool's children do the work and hold the caches.
    Pages a child shares with its parent count once per process, as RSS does; the figure is for
    comparing one point of a run with another, not for sizing a machine. None when no worker runs.
    """
    total = 0
    found = False
    for name, child in children.items():
        if not name.startswith("worker"):
            continue
        try:
            root = psutil.Process(child.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            try:
                total += process.memory_info().rss
                found = True
            except psutil.Error:  # a pool child may exit between the listing and the reading
                continue
    return total / MIB if found else None
