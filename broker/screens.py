"""Plumbing shared by the staff screens: the permission check every screen declares, and form errors
from a service's `ApplicationError` shown next to the fields they name."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django import forms
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django_htmx.middleware import HtmxDetails

from broker import access
from broker.exceptions import ApplicationError


class StaffRequest(HttpRequest):
    """A request to a staff screen: a logged-in user (`screen` checked it), and `request.htmx` from
    django-htmx's middleware (truthy for htmx requests)."""

    user: User
    htmx: HtmxDetails


View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def screen(*permissions: str) -> Callable[[View], View]:
    """A staff screen: anonymous users go to the login page; a user who is not staff holding every one of
    `permissions` (`broker.access`, as the API and the fills stream check them) gets the 403 page naming
    the first one missing."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            for permission in permissions:
                if not access.staff_may(user=request.user, permission=permission):
                    raise PermissionDenied(access.permission_message(permission))
            return view(request, *args, **kwargs)

        return cast(View, wrapper)

    return decorate


def add_service_errors(form: forms.Form, error: ApplicationError, field_names: dict[str, str]) -> None:
    """Put each message of `error` next to its form field (`field_names` maps API names to form names);
    messages about anything else go to the top of the form."""
    if not error.errors:
        form.add_error(None, error.message)
        return
    for name, messages in error.errors.items():
        field = field_names.get(name, name)
        for message in messages:
            form.add_error(field if field in form.fields else None, message)
