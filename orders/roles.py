"""Staff roles, as the order desk's screens import them; they are defined once in `broker.roles`."""

from __future__ import annotations

from broker.roles import (
    ADMIN,
    CANCEL_ORDER,
    CORRECT_TRADE,
    ENTER_ORDER,
    HANDLE_DEAD_LETTERS,
    OPERATE_KILL_SWITCH,
    OPERATIONS,
    OPERATIONS_PERMISSIONS,
    POST_CASH_MOVEMENTS,
    RUN_RECONCILIATION,
    TRADER,
    VIEW_BLOTTER,
    WORK_BREAKS,
    staff_member_ensure,
)

__all__ = [
    "ADMIN",
    "CANCEL_ORDER",
    "CORRECT_TRADE",
    "ENTER_ORDER",
    "HANDLE_DEAD_LETTERS",
    "OPERATE_KILL_SWITCH",
    "OPERATIONS",
    "OPERATIONS_PERMISSIONS",
    "POST_CASH_MOVEMENTS",
    "RUN_RECONCILIATION",
    "TRADER",
    "VIEW_BLOTTER",
    "WORK_BREAKS",
    "staff_member_ensure",
]
