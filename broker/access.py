"""Who may do what, for whom: the one check the API views, the staff screens and the fills stream make.

Two kinds of caller, whether they come with a token or a session:
- staff (`is_staff`) need the permission of the operation (`broker.roles`, the same one the screen of
  that operation checks) and then act on every customer;
- a client (a user bound to a customer) acts on its own customer only, and only with
  `CLIENT_PERMISSIONS`; halts, corrections and reconciliation are never a client's.

A refusal is `Forbidden` (403) naming the missing permission. The per-entity helpers built on this
(`orders.access.order_for_user`, `trade_for_user`, ...) live with their models.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from broker.exceptions import ApplicationError, Forbidden, NotFound
from broker.models import Customer
from broker.roles import CLIENT_PERMISSIONS
from broker.selectors import customer_of_user

Row = TypeVar("Row", bound=Model)


def permission_message(permission: str) -> str:
    return f"You need permission {permission} to do this."


def is_staff(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def staff_may(*, user: Any, permission: str) -> bool:
    """True when `user` is active staff holding `permission` (a superuser holds every one)."""
    return is_staff(user) and bool(user.has_perm(permission))


def customer_scope(*, user: Any, permission: str) -> Customer | None:
    """The customer `user` is confined to for an operation needing `permission`; None means every customer.

    Raises `Forbidden` naming the permission when staff lack it or a client may never have it, and
    when a non-staff user is bound to no customer.
    """
    if not user.is_authenticated or not user.is_active:
        raise Forbidden(permission_message(permission))
    if user.is_staff:
        if not user.has_perm(permission):
            raise Forbidden(permission_message(permission))
        return None
    if permission not in CLIENT_PERMISSIONS:
        raise Forbidden(permission_message(permission))
    customer = _bound_customer(user)
    if customer is None:
        raise Forbidden("This user is not bound to a customer.")
    return customer


def _bound_customer(user: Any) -> Customer | None:
    # A request asks more than once (the view, then order entry's validation): kept on the user object
    # for the request, as Django keeps a user's permissions.
    if not hasattr(user, "_access_customer"):
        user._access_customer = customer_of_user(user)
    customer: Customer | None = user._access_customer
    return customer


def bound_customer_preload(*, user: Any, customer: Customer | None) -> None:
    """Tell the checks of this request which customer `user` is bound to (None: none), read together with
    the user itself (`broker.api.authentication`); `customer_of_user` is then not asked again."""
    user._access_customer = customer


def permission_require(*, user: Any, permission: str) -> None:
    """Refuse (403 naming `permission`) unless `user` may use it on at least its own customer."""
    customer_scope(user=user, permission=permission)


def scoped(queryset: QuerySet[Row], *, user: Any, permission: str, customer_field: str = "customer") -> QuerySet[Row]:
    """`queryset` narrowed to the rows `user` may see or act on with `permission`."""
    customer = customer_scope(user=user, permission=permission)
    return queryset if customer is None else queryset.filter(**{customer_field: customer})


def customer_for_user(*, user: Any, customer_id: str, permission: str, field: str | None = None) -> Customer:
    """The customer `customer_id` if `user` may use `permission` on it.

    Someone else's customer is 403 for a client. An unknown id is 404, or, when it came in a request
    body (`field` names it there), a 400 naming that field.
    """
    own = customer_scope(user=user, permission=permission)
    if own is not None:
        if own.customer_id != customer_id:
            raise Forbidden(f"This token acts for customer {own.customer_id} only.", field=field or "customerId")
        return own
    customer = Customer.objects.filter(customer_id=customer_id).first()
    if customer is None:
        if field:
            raise ApplicationError(f"Unknown customer {customer_id!r}.", field=field)
        raise NotFound(f"No customer {customer_id}.")
    return customer
