"""Forms of the report screens."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from broker.text import TextFormField
from orders.forms import customer_choices
from reporting.reconciliation import COMMENT_TEXT, RESOLUTION_TEXT


class TradeSearchForm(forms.Form):
    customer = forms.ChoiceField(required=False)
    ticker = forms.CharField(required=False, max_length=12, widget=forms.TextInput(attrs={"placeholder": "e.g. COIN"}))
    order_id = forms.UUIDField(label="Order id", required=False)
    exchange = forms.CharField(
        required=False, max_length=12, widget=forms.TextInput(attrs={"placeholder": "e.g. EDGA"})
    )
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["customer"]).choices = [("", "All customers"), *customer_choices()[1:]]
        self.fields["order_id"].error_messages["invalid"] = "Enter a whole order id, e.g. 6c65a0e2-…"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "Must be on or after the From date.")
        return data


class BreakCommentForm(forms.Form):
    text = TextFormField(text=COMMENT_TEXT, label="Comment", required=False, widget=forms.Textarea(attrs={"rows": 2}))


class BreakResolveForm(forms.Form):
    resolution = TextFormField(text=RESOLUTION_TEXT, required=False, widget=forms.Textarea(attrs={"rows": 2}))
