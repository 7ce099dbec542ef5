"""Bounded text: the one check every string from outside passes before it can reach the database.

A `Text` rule says how long a string may be and whether it is one line (names, identifiers, reasons)
or free text (comments, resolutions). `Text.problem()` is the pure check; `TextField` (DRF),
`ChoiceTextField` (DRF) and `TextFormField` (Django forms) are built on it, and hand-written validators
call `Text.clean()`, so every message is written once, here.

The rules, wherever a string comes from (API body, screen form, admin form, CSV cell):
- NUL is refused everywhere: Postgres cannot store or compare it.
- An unpaired surrogate (JSON can carry "\\ud800") is refused everywhere: it is not text, cannot be
  encoded as UTF-8 and would fail in the database driver or when the answer is rendered.
- One-line fields refuse every control character (Unicode category Cc, including a trailing newline,
  tab and DEL) and the line/paragraph separators U+2028/U+2029.
- Free-text fields (only those stored in a TextField) allow line breaks (CR, LF) and tabs.
- Length is counted in characters (code points), as Postgres counts `varchar(n)`, after surrounding
  whitespace is stripped; `max_length` is the model field's, or `FREE_TEXT_MAX_LENGTH` for a TextField.
- Characters outside the Basic Multilingual Plane (emoji) are text: free text keeps them intact.
  Identifiers are further held to their own ASCII patterns by their validators, which refuse them.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from rest_framework import serializers

from broker.exceptions import ValidationFailed

FREE_TEXT_MAX_LENGTH = 2000
LINE_SEPARATORS = {"\u2028", "\u2029"}
# Control characters (Unicode category Cc: U+0000-001F, U+007F-009F) and unpaired surrogates (Cs);
# one line also refuses the line and paragraph separators. Free text keeps tab, LF and CR.
ONE_LINE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
SURROGATE = re.compile("[\ud800-\udfff]")
MULTILINE_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
LINE_BREAKS = {"\n", "\r", "\v", "\f", "\x85", *LINE_SEPARATORS}


class TextError(ValueError):
    """A string a `Text` rule refuses; the message says why without echoing the value."""


class Text:
    """How long a string may be, and whether it may span lines."""

    __slots__ = ("max_length", "multiline")

    def __init__(self, *, max_length: int, multiline: bool = False):
        self.max_length = max_length
        self.multiline = multiline

    @classmethod
    def of(cls, model: type[models.Model], field_name: str) -> Text:
        """The rule of a model's field: its max_length and one line, or free text for a TextField."""
        field = model._meta.get_field(field_name)
        if isinstance(field, models.TextField):
            return cls(max_length=FREE_TEXT_MAX_LENGTH, multiline=True)
        if not isinstance(field, models.CharField) or field.max_length is None:
            raise TypeError(f"{model.__name__}.{field_name} is not a bounded text field")
        return cls(max_length=field.max_length)

    def problem(self, value: str) -> str | None:
        """Why `value` is refused, or None. Checked on the value as sent, before anything strips it."""
        refused = (MULTILINE_REFUSED if self.multiline else ONE_LINE_REFUSED).search(value)
        if refused is not None:
            character = refused.group()
            if character == "\x00":
                return "Contains a NUL character (\\x00), which no field accepts."
            if "\ud800" <= character <= "\udfff":
                return f"Contains U+{ord(character):04X}, an unpaired surrogate, which is not text."
            if self.multiline:
                return f"Contains the control character U+{ord(character):04X}; only line breaks and tabs are allowed."
            kind = "a line break" if character in LINE_BREAKS else "a control character"
            return f"Contains {kind} (U+{ord(character):04X}) where one line of text is expected."
        length = len(value.strip())
        if length > self.max_length:
            return f"Must be at most {self.max_length} characters (this has {length})."
        return None

    def clean(self, value: str) -> str:
        """`value` without surrounding whitespace, or `TextError`."""
        problem = self.problem(value)
        if problem is not None:
            raise TextError(problem)
        return value.strip()

    def require(self, value: str, *, field: str) -> str:
        """`clean()` for services: a refusal is a 400 naming `field`."""
        try:
            return self.clean(value)
        except TextError as error:
            raise ValidationFailed({field: [str(error)]}) from None


def text_problems(data: dict[str, Any], rules: dict[str, Text]) -> dict[str, list[str]]:
    """For a hand-written validator: the refusal of each string in `data` that `rules` names."""
    errors: dict[str, list[str]] = {}
    for name, rule in rules.items():
        value = data.get(name)
        if isinstance(value, str):
            problem = rule.problem(value)
            if problem is not None:
                errors[name] = [problem]
    return errors


def surrogate_path(value: Any, path: str = "") -> str | None:
    """Where in parsed JSON a string (key or value) holds an unpaired surrogate; None if nowhere."""
    if isinstance(value, str):
        return path or "body" if SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = surrogate_path(key, path or "body") if isinstance(key, str) else None
            found = found or surrogate_path(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(value, list):
        for _index, item in enumerate(value):
            found = surrogate_path(item, path or "body")
            if found:
                return found
    return None


class TextField(serializers.CharField):
    """A JSON string held to a `Text` rule (a number is refused, not turned into text)."""

    def __init__(self, *, text: Text, **kwargs: Any):
        kwargs.setdefault("max_length", text.max_length)  # shown in the OpenAPI schema
        kwargs["trim_whitespace"] = False  # the rule checks the value as sent, then strips it
        super().__init__(**kwargs)
        self.text = text

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return self.text.clean(data)
        except TextError as error:
            raise serializers.ValidationError(str(error)) from None


class ChoiceTextField(serializers.ChoiceField):
    """A choice whose input is first held to one line of at most the longest choice's length, so a
    refusal never echoes a control character or an unpaired surrogate back."""

    def __init__(self, *, choices: Any, **kwargs: Any):
        super().__init__(choices=choices, **kwargs)
        self.text = Text(max_length=max((len(str(key)) for key in self.choices), default=1))

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            problem = self.text.problem(data)
            if problem is not None:
                raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class TextFormField(forms.CharField):
    """A form field held to a `Text` rule; the browser also gets the length as `maxlength`."""

    def __init__(self, *, text: Text, **kwargs: Any):
        kwargs.setdefault("max_length", text.max_length)
        kwargs["strip"] = False  # the rule checks the value as sent, then strips it
        super().__init__(**kwargs)
        self.text = text

    def to_python(self, value: Any) -> str | None:
        value = super().to_python(value)
        if value in self.empty_values:
            return self.empty_value
        try:
            return self.text.clean(value)
        except TextError as error:
            raise ValidationError(str(error), code="text") from None


class BoundedTextAdmin:
    """Admin mixin: every plain text field of the model's form (no choices, not an email or URL) is a
    `TextFormField` held to its model field's rule, so the admin refuses what the API and the screens
    refuse. The model field's own validators (e.g. a customer id's pattern) still run on save."""

    def formfield_for_dbfield(self, db_field: models.Field[Any, Any], request: Any, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]
        if (
            type(formfield) is forms.CharField  # not an EmailField, URLField, SlugField: they check more
            and isinstance(db_field, models.CharField | models.TextField)
            and not db_field.choices
            and db_field.model is not None
        ):
            rule = Text.of(db_field.model, db_field.name)
            bounded = TextFormField(
                text=rule,
                required=formfield.required,
                label=formfield.label,
                help_text=formfield.help_text,
                initial=formfield.initial,
                widget=formfield.widget,
                empty_value=formfield.empty_value,
            )
            return bounded
        return formfield
