"""Print (creating if needed) an API token: `api_token 000002` or `api_token --staff NAME`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from broker import services
from broker.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Print the API token of a customer's client user, or of a staff user, as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id", nargs="?", help="Six-digit customerId, e.g. 000002.")
        parser.add_argument("--staff", metavar="NAME", help="A staff user (created if missing) instead.")
        parser.add_argument("--rotate", action="store_true", help="Replace the existing token with a new one.")

    def handle(self, *args: Any, customer_id: str | None, staff: str | None, rotate: bool, **options: Any) -> None:
        if bool(customer_id) == bool(staff):
            raise CommandError("Give either a customerId or --staff NAME.")
        try:
            if staff:
                token = services.api_token_for_staff(username=staff, rotate=rotate)
            else:
                assert customer_id is not None
                token = services.api_token_for_customer(customer_id=customer_id, rotate=rotate)
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(token.key)
