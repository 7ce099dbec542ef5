"""Token authentication that answers, in one query, everything a request's access checks ask about its caller.

DRF's `TokenAuthentication` reads the token and its user through the ORM; then `broker.access` asks for
the customer the user is bound to, and a staff user's first `has_perm` loads its permissions: three to
five queries per API request before the view does any work, and most of the CPU of each is the ORM
compiling it. Here one hand-written query (compiled once per process) reads the token, the user, the
bound customer and, for staff, the user's own and group permissions, all as of this request: nothing is
kept between requests, so a deleted token, a deactivated user or a changed role counts from the very
next request, exactly as with DRF's class. The answers (401 messages, `request.user`, `request.auth`)
are DRF's.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import ManyToManyField, Model
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from broker import access
from broker.models import Customer


@functools.cache
def _columns(model: type[Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _m2m_table(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    if not isinstance(field, ManyToManyField):
        raise TypeError(f"{model.__name__}.{name} is not a many-to-many field")
    return connection.ops.quote_name(field.m2m_db_table())


@functools.cache
def _credentials_sql() -> str:
    user_model = get_user_model()

    def select(model: type[Model], alias: str) -> str:
        quote = connection.ops.quote_name
        return ", ".join(f"{alias}.{quote(str(field.column))}" for field in model._meta.concrete_fields)

    # The names ModelBackend gives permissions: "<app_label>.<codename>".
    permission_name = "ct.app_label || '.' || p.codename"
    permissions = f"{_table(Permission)} p JOIN {_table(ContentType)} ct ON ct.id = p.content_type_id"
    # Only an active, non-superuser staff user's permissions are ever looked up (a superuser holds all
    # of them without a lookup; clients act with `CLIENT_PERMISSIONS`): the others skip both subqueries.
    loads_permissions = "u.is_active AND u.is_staff AND NOT u.is_superuser"
    return (
        f"SELECT {select(Token, 't')}, {select(user_model, 'u')}, {select(Customer, 'c')}, "  # noqa: S608
        f"CASE WHEN {loads_permissions} THEN ARRAY(SELECT {permission_name} FROM {permissions} "
        f"JOIN {_m2m_table(user_model, 'user_permissions')} up ON up.permission_id = p.id "
        "WHERE up.user_id = u.id) END, "
        f"CASE WHEN {loads_permissions} THEN ARRAY(SELECT {permission_name} FROM {permissions} "
        f"JOIN {_m2m_table(Group, 'permissions')} gp ON gp.permission_id = p.id "
        f"JOIN {_m2m_table(user_model, 'groups')} ug ON ug.group_id = gp.group_id WHERE ug.user_id = u.id) END "
        f"FROM {_table(Token)} t JOIN {_table(user_model)} u ON u.id = t.user_id "
        f"LEFT JOIN {_table(Customer)} c ON c.user_id = u.id "
        "WHERE t.key = %s"
    )


def _instance(model: type[Model], values: tuple[Any, ...]) -> Any:
    return model.from_db(connection.alias, list(_columns(model)), list(values))


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's class, with the caller's access facts loaded in the same query."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        if "\x00" in key:  # no key holds one, and Postgres refuses to compare text holding one (a 500)
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        with connection.cursor() as cursor:
            cursor.execute(_credentials_sql(), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token_width, user_width = len(_columns(Token)), len(_columns(get_user_model()))
        customer_start = token_width + user_width
        token: Token = _instance(Token, row[:token_width])
        user = _instance(get_user_model(), row[token_width:customer_start])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token.user = user
        customer_values = row[customer_start : customer_start + len(_columns(Customer))]
        customer = None if customer_values[0] is None else _instance(Customer, customer_values)
        access.bound_customer_preload(user=user, customer=customer)
        user_permissions, group_permissions = row[-2], row[-1]
        if user_permissions is not None:
            # The caches Django's ModelBackend fills on a user's first permission check of a request,
            # filled with the same names from the same tables.
            user._user_perm_cache = set(user_permissions)
            user._group_perm_cache = set(group_permissions)
            user._perm_cache = {*user._user_perm_cache, *user._group_perm_cache}
        return user, token
