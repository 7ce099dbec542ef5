"""Staff roles: the groups, the permissions each role holds, and the ones a client token has.

A screen, an API view and the fills stream name the permission they need (`broker.access`), never a
group. The groups and permissions are created by a data migration (orders/migrations/0010_staff_roles.py),
which keeps its own frozen copy of these names; `role_group_ensure` re-creates a role that is missing
(a database flushed by a test, or a group deleted in the admin) from `ROLE_PERMISSIONS`.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
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
HANDLE_DEAD_LETTERS = "broker.handle_dead_letters"
POST_CASH_MOVEMENTS = "settlement.post_cash_movements"

OPERATIONS_PERMISSIONS = (
    OPERATE_KILL_SWITCH,
    CORRECT_TRADE,
    WORK_BREAKS,
    RUN_RECONCILIATION,
    HANDLE_DEAD_LETTERS,
    POST_CASH_MOVEMENTS,
)

# permission -> (model its content type hangs on, description), as the roles migration created them
PERMISSIONS: dict[str, tuple[str, str]] = {
    ENTER_ORDER: ("order", "Can enter orders on the ticket and by bulk booking"),
    CANCEL_ORDER: ("order", "Can cancel open orders"),
    VIEW_BLOTTER: ("order", "Can see the blotter, positions and trades"),
    OPERATE_KILL_SWITCH: ("halt", "Can halt and release trading"),
    CORRECT_TRADE: ("trade", "Can amend and bust trades"),
    WORK_BREAKS: ("break", "Can assign, comment on and resolve reconciliation breaks"),
    RUN_RECONCILIATION: ("reconciliationrun", "Can run reconciliation now"),
    HANDLE_DEAD_LETTERS: ("deadletter", "Can retry and close failed tasks, and act on their orders"),
    POST_CASH_MOVEMENTS: ("posting", "Can post deposits, withdrawals and journals between customers"),
}

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    TRADER: (ENTER_ORDER, CANCEL_ORDER, VIEW_BLOTTER),
    OPERATIONS: (VIEW_BLOTTER, *OPERATIONS_PERMISSIONS),
    ADMIN: tuple(PERMISSIONS),
}
ROLES = tuple(ROLE_PERMISSIONS)

# A client token acts for its own customer only, with what a Trader may do there: enter and cancel
# orders and read its orders, trades, holdings and the tickers. Halts, corrections and reconciliation
# are staff work whatever the customer.
CLIENT_PERMISSIONS = frozenset({ENTER_ORDER, CANCEL_ORDER, VIEW_BLOTTER})


def _permission_ensure(name: str) -> Permission:
    app_label, codename = name.split(".")
    model, description = PERMISSIONS[name]
    content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=codename, defaults={"name": description}
    )
    return permission


@transaction.atomic
def role_group_ensure(*, role: str) -> Group:
    """The group of `role`, created with the role's permissions when it is missing.

    An existing group is returned as it is: an administrator may have narrowed it on purpose.
    """
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"Unknown role {role!r}; one of {', '.join(ROLES)}.")
    group = Group.objects.filter(name=role).first()
    if group is None:
        group = Group.objects.create(name=role)
        group.permissions.add(*(_permission_ensure(name) for name in ROLE_PERMISSIONS[role]))
    return group


def roles_of(user: AbstractUser) -> list[str]:
    """The role groups `user` belongs to, in the order of `ROLES`."""
    names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return [role for role in ROLES if role in names]


@transaction.atomic
def role_assign(*, user: AbstractUser, role: str) -> bool:
    """Make `role` the user's only role (other, non-role groups stay). True when that changed anything."""
    group = role_group_ensure(role=role)
    if roles_of(user) == [role]:
        return False
    user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(pk=group.pk))
    user.groups.add(group)
    return True


@transaction.atomic
def staff_member_ensure(*, username: str, password: str | None, group: str) -> tuple[AbstractUser, str | None]:
    """Create a staff user in `group` (a role) once.

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
    user.groups.add(role_group_ensure(role=group))
    return user, generated
