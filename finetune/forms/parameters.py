"""The training-parameter form (训练参数, F1.10), generated from an algorithm's JSON Schema.

Each property becomes a field of its type with the schema's default, bounds,
enum and help text, in the page's language (title_zh/description_zh). The
server validates with the form's fields and then with the schema itself, so a
hand-made POST cannot slip a value past either.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jsonschema
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import get_language
from django.utils.translation import gettext as _

PREFIX = "param"


def _localized(schema: dict, key: str) -> str:
    if (get_language() or "en").lower().startswith("zh") and schema.get(f"{key}_zh"):
        return schema[f"{key}_zh"]
    return schema.get(key, "")


def _exclusive_minimum(bound: float):
    def check(value):
        if value is not None and value <= bound:
            raise ValidationError(
                _("Ensure this value is greater than %(bound)s.") % {"bound": bound}
            )

    return check


def _multiple_of(step: float):
    def check(value):
        if value is not None and Decimal(str(value)) % Decimal(str(step)) != 0:
            raise ValidationError(
                _("Ensure this value is a multiple of %(step)s.") % {"step": step}
            )

    return check


def field_for(schema: dict) -> forms.Field:
    kind = schema.get("type")
    common: dict[str, Any] = {
        "label": _localized(schema, "title"),
        "help_text": _localized(schema, "description"),
        "initial": schema.get("default"),
    }
    validators = []
    if "exclusiveMinimum" in schema:
        validators.append(_exclusive_minimum(schema["exclusiveMinimum"]))
    if "multipleOf" in schema:
        validators.append(_multiple_of(schema["multipleOf"]))
    if "enum" in schema:
        return forms.TypedChoiceField(
            choices=[(value, value) for value in schema["enum"]],
            coerce={"integer": int, "number": float}.get(kind, str),
            **common,
        )
    if kind == "boolean":
        return forms.BooleanField(required=False, **common)
    if kind == "integer":
        return forms.IntegerField(
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            validators=validators,
            **common,
        )
    if kind == "number":
        field = forms.FloatField(
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            validators=validators,
            **common,
        )
        field.widget.attrs["step"] = "any"
        return field
    return forms.CharField(
        required=False,
        max_length=schema.get("maxLength"),
        empty_value="",
        strip=False,
        **common,
    )


class ParametersForm(forms.Form):
    """Fields named after the schema's properties, prefixed `param-` in the page."""

    def __init__(self, schema: dict, *args, **kwargs) -> None:
        kwargs.setdefault("prefix", PREFIX)
        super().__init__(*args, **kwargs)
        self.schema = schema or {}
        for name, prop in (self.schema.get("properties") or {}).items():
            self.fields[name] = field_for(prop)

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            jsonschema.validate(cleaned, _without_extensions(self.schema))
        except jsonschema.ValidationError as exc:
            where = exc.path[0] if exc.path else None
            self.add_error(where if where in self.fields else None, exc.message)
        return cleaned


def _without_extensions(schema: dict) -> dict:
    # The trainer's schemas declare draft 2020-12; validate with that draft.
    return {key: value for key, value in schema.items() if key != "$schema"}
