"""Staff users with roles, for the screen tests (the groups come from the roles migration's own code,
run again because a transactional test's flush empties them)."""

from __future__ import annotations

import importlib

from django.apps import apps
from django.contrib.auth.models import User

from orders import roles

PASSWORD = "screens-pw-1"
_migration = importlib.import_module("orders.migrations.0010_staff_roles")
_dead_letters = importlib.import_module("orders.migrations.0016_dead_letter_permission")
_cash_movements = importlib.import_module("orders.migrations.0020_cash_movement_permission")


def roles_ensure() -> None:
    _migration.create_roles(apps, None)
    _dead_letters.add_permission(apps, None)
    _cash_movements.add_permission(apps, None)


def staff_user(username: str, group: str) -> User:
    roles_ensure()
    user, _ = roles.staff_member_ensure(username=username, password=PASSWORD, group=group)
    assert isinstance(user, User)
    return user
