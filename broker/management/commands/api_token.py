"""Print (creating if needed) an API token: `api_token 000002` or `api_token --staff NAME [--role ROLE]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from broker import roles, services
from broker.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Print the API token of a customer's client user, or of a staff user, as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id", nargs="?", help="Six-digit customerId, e.g. 000002.")
        parser.add_argument("--staff", metavar="NAME", help="A staff user (created if missing) instead.")
        parser.add_argument(
            "--role",
            choices=roles.ROLES,
            help="The staff user's role, which decides what its token may do (a new user: Admin; "
            "an existing user keeps its role unless this names another).",
        )
        parser.add_argument("--rotate", action="store_true", help="Replace the existing token with a new one.")

    def handle(
        self, *args: Any, customer_id: str | None, staff: str | None, role: str | None, rotate: bool, **options: Any
    ) -> None:
        if bool(customer_id) == bool(staff):
            raise CommandError("Give either a customerId or --staff NAME.")
        if role and not staff:
            raise CommandError("--role is for staff tokens (--staff NAME); a client token acts for its customer.")
        try:
            if staff:
                existing = get_user_model().objects.filter(username=staff).first()
                before = roles.roles_of(existing) if existing is not None else None
                token = services.api_token_for_staff(username=staff, role=role, rotate=rotate)
                after = roles.roles_of(token.user)
                if before is None:
                    self.stdout.write(f"Created staff user {staff} with role {', '.join(after)}.")
                elif before != after:
                    was = ", ".join(before) or "no role"
                    self.stdout.write(f"Staff user {staff} now has role {', '.join(after)} (was {was}).")
                else:
                    self.stdout.write(f"Staff user {staff} has role {', '.join(after)}.")
            else:
                assert customer_id is not None
                token = services.api_token_for_customer(customer_id=customer_id, rotate=rotate)
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(token.key)
