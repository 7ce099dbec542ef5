"""Forms of the staff order screens. They only collect and show input: the checks are the API's
(`orders.validation`, the selectors and services), and their errors are put next to the fields."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from broker.models import Customer
from broker.text import Text, TextFormField
from orders import kill_switch
from orders.models import Direction, HaltScope, OrderType, TimeInForce
from orders.validation import CORRECTION_REASON_TEXT, PRICE_TEXT

# API field name -> ticket form field name
TICKET_FIELDS = {
    "customerId": "customer",
    "direction": "direction",
    "ticker": "ticker",
    "type": "order_type",
    "quantity": "quantity",
    "price": "price",
    "timeInForce": "time_in_force",
    "clientOrderId": "client_order_id",
}


def customer_choices() -> list[tuple[str, str]]:
    return [("", "Choose a customer")] + [
        (customer_id, f"{customer_id} · {name}")
        for customer_id, name in Customer.objects.order_by("customer_id").values_list("customer_id", "name")
    ]


class OrderTicketForm(forms.Form):
    customer = forms.ChoiceField(required=False)
    ticker = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "list": "ticker-symbols", "placeholder": "e.g. COIN"}),
    )
    direction = forms.ChoiceField(
        choices=Direction.choices, initial=Direction.BUY, required=False, widget=forms.RadioSelect
    )
    order_type = forms.ChoiceField(label="Type", choices=OrderType.choices, initial=OrderType.LIMIT, required=False)
    quantity = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"inputmode": "numeric", "placeholder": "shares"})
    )
    price = forms.CharField(
        label="Limit price",
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "e.g. 161.90"}),
    )
    time_in_force = forms.ChoiceField(
        label="Time in force", choices=TimeInForce.choices, initial=TimeInForce.DAY, required=False
    )
    client_order_id = forms.CharField(label="Client order id", required=False, help_text="Optional")

    def __init__(self, *args: Any, focus: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["customer"]).choices = customer_choices()
        if focus:  # a fresh ticket starts at the customer; after a submit the page moves the cursor itself
            self.fields["customer"].widget.attrs["autofocus"] = True

    def api_body(self) -> dict[str, Any]:
        """The request as the API would receive it: blank fields left out, a whole number as a number."""
        data = self.data
        body: dict[str, Any] = {}
        for api_name, form_name in TICKET_FIELDS.items():
            # Spaces only: a control character (a trailing newline) is left for the API's check to refuse.
            value = str(data.get(form_name, "")).strip(" ")
            if value:
                body[api_name] = value
        quantity = body.get("quantity")
        if isinstance(quantity, str) and quantity.replace(",", "").isdigit():
            body["quantity"] = int(quantity.replace(",", ""))
        if body.get("type") == OrderType.MARKET:
            body.pop("price", None)  # the price box may still hold a limit typed before switching to Market
        return body


class BulkUploadForm(forms.Form):
    file = forms.FileField(label="CSV file", required=False, widget=forms.ClearableFileInput(attrs={"accept": ".csv"}))


class BulkGenerateForm(forms.Form):
    count = TextFormField(
        text=Text(max_length=6),
        label="Number of orders",
        required=False,
        initial="50",
        widget=forms.TextInput(attrs={"inputmode": "numeric"}),
    )


class HaltForm(forms.Form):
    # A plain field with a select: the kill-switch service checks the scope, so a bad one gets one message.
    scope = TextFormField(
        text=Text(max_length=max(len(scope) for scope in HaltScope.values)),
        required=False,
        widget=forms.Select(choices=HaltScope.choices),
        initial=HaltScope.TICKER,
    )
    target = TextFormField(
        text=kill_switch.TARGET_TEXT,
        required=False,
        help_text="Pool name, ticker symbol or customer id; empty for All.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. COIN"}),
    )
    reason = TextFormField(
        text=kill_switch.REASON_TEXT, required=False, widget=forms.TextInput(attrs={"placeholder": "why trading stops"})
    )


class TradeCorrectionForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("amend", "Amend"), ("bust", "Bust")], initial="amend", widget=forms.RadioSelect
    )
    price = TextFormField(text=PRICE_TEXT, required=False, help_text="New price; empty keeps it.")
    quantity = TextFormField(text=Text(max_length=20), required=False, help_text="New, lower quantity; empty keeps it.")
    reason = TextFormField(
        text=CORRECTION_REASON_TEXT,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "agreed with the venue"}),
    )


DEAD_LETTER_NOTE_TEXT = Text(max_length=1000, multiline=True)


class DeadLetterCloseForm(forms.Form):
    note = TextFormField(
        text=DEAD_LETTER_NOTE_TEXT,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "how it was handled"}),
        error_messages={"required": "Say how it was handled."},
    )


class DeadLetterCancelForm(forms.Form):
    reason = TextFormField(
        text=Text(max_length=200),
        widget=forms.TextInput(attrs={"placeholder": "why the order is cancelled"}),
        error_messages={"required": "Give the reason for the cancel."},
    )
