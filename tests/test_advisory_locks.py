"""Postgres advisory lock keys are one number space for the whole database: two uses of one key would
make unrelated work exclude each other (a ledger fold once waited on the stream sequencer's leadership)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("broker", "orders", "pools", "settlement", "reporting")
# A module constant named ..._LOCK bound to an integer literal: how every key is declared.
KEY = re.compile(r"^([A-Z][A-Z0-9_]*_LOCK)\s*=\s*([0-9_]+)\b", re.MULTILINE)


def lock_keys() -> list[tuple[str, int]]:
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            for name, value in KEY.findall(path.read_text()):
                found.append((f"{path.relative_to(ROOT)}:{name}", int(value.replace("_", ""))))
    return found


def test_every_advisory_lock_key_is_used_once() -> None:
    keys = lock_keys()
    assert len(keys) >= 4  # aggregation, stream numbering, sequencer leadership, ledger fold
    by_value: dict[int, list[str]] = {}
    for where, value in keys:
        by_value.setdefault(value, []).append(where)
    assert {value: places for value, places in by_value.items() if len(places) > 1} == {}
