"""Staff roles: the groups and the permissions each staff screen checks.

The groups and permissions are created by a data migration (orders/migrations/0010_staff_roles.py), which
copies these names; a screen names the permission it needs, never a group. `seed_demo` creates one
demo user per role with `staff_member_ensure`.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction

TRADER = "Trader"
OPERATIONS = "Operations"
ADMIN = "Admin"

ENTER_ORDER = "orders.enter_order"
CANCEL_ORDER = "orders.cancel_order"
VIEW_BLOTTER = "orders.view_blotter"
OPERATE_KILL_SWITCH = "orders.operate_kill_switch"
CORRECT_TRADE = "orders.correct_trade"
WORK_BREAKS = "reporting.work_breaks"
RUN_RECONCILIATION = "reporting.run_reconciliation"

OPERATIONS_PERMISSIONS = (OPERATE_KILL_SWITCH, CORRECT_TRADE, WORK_BREAKS, RUN_RECONCILIATION)


@transaction.atomic
def staff_member_ensure(*, username: str, password: str | None, group: str) -> tuple[AbstractUser, str | None]:
    """Create a staff user in `group` once (it must exist: the roles migration made it).

    Returns the password only when this call generated it; an existing user is left as it is.
    """
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        return user, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    user = user_model.objects.create_user(
        username=username, email=f"{username}@broker.local", password=password, is_staff=True
    )
    user.groups.add(Group.objects.get(name=group))
    return user, generated
