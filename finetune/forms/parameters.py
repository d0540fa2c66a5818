"""The training-parameter form (训练参数, F1.10), generated from an algorithm's JSON Schema.

Each property becomes a field of its type with the schema's default, bounds,
enum and help text, in the page's language (title_zh/description_zh). The
server validates with the form's fields and then with the schema itself, so a
hand-made POST cannot slip a value past either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import jsonschema
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from finetune.services.data import MODEL_VERSION, version_ref
from finetune.texts import in_page_language
from trainer.spec import missing_required

PREFIX = "param"
#: The largest whole number a parameter may hold: exact in JSON and in the browser.
MAX_INTEGER = 2**53


def localized(schema: dict, key: str) -> str:
    """The schema's `key` (title, description) in the page's language."""
    return in_page_language(schema.get(key, ""), schema.get(f"{key}_zh", ""))


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


def _regex(value):
    if value:
        try:
            re.compile(value)
        except (re.error, OverflowError, RecursionError, ValueError) as exc:
            raise ValidationError(
                _("Not a valid regular expression: %(error)s") % {"error": exc}
            ) from None


def _choice_label(labels: list[str] | None, value: Any) -> str:
    if not labels:
        return str(value)
    return in_page_language(labels[0], labels[1] if len(labels) > 1 else "")


def value_label(schema: dict, value: Any) -> Any:
    """A parameter's value as the job's page shows it: a choice by its label, a switch
    as yes or no, in the page's language; anything else as it is."""
    labels = (schema.get("x-enum-labels") or {}).get(value) if isinstance(value, str) else None
    if labels:
        return _choice_label(labels, value)
    special = (schema.get("x-value-labels") or {}).get(str(value))
    if special and not isinstance(value, bool):
        return _choice_label(special, value)
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    return value


def field_for(schema: dict) -> forms.Field:
    kind = schema.get("type")
    common: dict[str, Any] = {
        "label": localized(schema, "title"),
        "help_text": localized(schema, "description"),
        "initial": schema.get("default"),
    }
    validators = []
    if "exclusiveMinimum" in schema:
        validators.append(_exclusive_minimum(schema["exclusiveMinimum"]))
    if "multipleOf" in schema:
        validators.append(_multiple_of(schema["multipleOf"]))
    if "enum" in schema:
        # x-enum-labels: value -> [English, Chinese], shown in the page's language
        labels = schema.get("x-enum-labels") or {}
        return forms.TypedChoiceField(
            choices=[(value, _choice_label(labels.get(value), value)) for value in schema["enum"]],
            coerce={"integer": int, "number": float}.get(kind, str),
            **common,
        )
    if kind == "boolean":
        return forms.BooleanField(required=False, **common)
    if kind == "integer":
        return forms.IntegerField(
            min_value=schema.get("minimum", -MAX_INTEGER),
            max_value=schema.get("maximum", MAX_INTEGER),
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
    if schema.get("format") == "regex":
        validators.append(_regex)
    return forms.CharField(
        required=False,
        max_length=schema.get("maxLength"),
        validators=validators,
        empty_value="",
        strip=False,
        **common,
    )


class ModelVersionField(forms.ModelChoiceField):
    def label_from_instance(self, version) -> str:
        return f"{version.repo.name} v{version.number}"


class ParametersForm(forms.Form):
    """Fields named after the schema's properties, prefixed `param-` in the page.

    A property marked `x-model-version` is a choice among the model versions the
    user may view (`model_versions(scenario)`); the job stores the reference
    `{"model_version": id}` and the launch turns it into the version's folder.
    """

    def __init__(
        self,
        schema: dict,
        *args,
        model_versions: Callable[[str], Any] | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("prefix", PREFIX)
        initial = kwargs["initial"] = dict(kwargs.get("initial") or {})
        super().__init__(*args, **kwargs)
        self.schema = schema or {}
        for name, prop in (self.schema.get("properties") or {}).items():
            if MODEL_VERSION in prop:
                scenario = prop[MODEL_VERSION]["scenario"]
                versions = model_versions(scenario) if model_versions else None
                self.fields[name] = ModelVersionField(
                    queryset=versions if versions is not None else _no_versions(),
                    required=False,
                    label=localized(prop, "title"),
                    help_text=_("A model version of this project that you may view."),
                )
                self.initial[name] = version_ref(initial.get(name))
            else:
                self.fields[name] = field_for(prop)

    # --- 基础参数 and 高级参数: the schema marks the advanced ones (trainer/parameters.py)

    def _group(self, advanced: bool) -> list[forms.BoundField]:
        props = self.schema.get("properties") or {}
        return [
            self[name]
            for name in self.fields
            if bool(props.get(name, {}).get("x-advanced")) == advanced
        ]

    def basic_fields(self) -> list[forms.BoundField]:
        return self._group(advanced=False)

    def advanced_fields(self) -> list[forms.BoundField]:
        return self._group(advanced=True)

    def advanced_open(self) -> bool:
        """Unfold 高级参数 where it holds an error or a value other than its default
        (a clone, a preset), so that nothing that matters is hidden."""
        props = self.schema.get("properties") or {}
        for field in self.advanced_fields():
            if field.errors:
                return True
            try:
                value = field.field.to_python(field.value())
            except ValidationError:
                return True
            default = props[field.name].get("default")
            if value in (None, "") and default in (None, ""):
                continue  # an empty choice (of a model version) is the empty default
            if str(value) != str(default):
                return True
        return False

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        for name, field in self.fields.items():
            if isinstance(field, ModelVersionField):
                version = cleaned.get(name)
                cleaned[name] = {"model_version": version.pk} if version else ""
        for name in missing_required(self.schema, cleaned):
            self.add_error(name, _("This field is required with the choices above."))
        try:
            jsonschema.validate(cleaned, _for_validation(self.schema))
        except jsonschema.ValidationError as exc:
            where = exc.path[0] if exc.path else None
            self.add_error(where if where in self.fields else None, exc.message)
        return cleaned


def _no_versions():
    from finetune.models import ModelVersion

    return ModelVersion.objects.none()


def _for_validation(schema: dict) -> dict:
    """The schema the stored parameters meet: a model version is a reference there."""
    properties = {
        name: ({} if MODEL_VERSION in prop else prop)
        for name, prop in (schema.get("properties") or {}).items()
    }
    # The trainer's schemas declare draft 2020-12; validate with that draft.
    found = {key: value for key, value in schema.items() if key != "$schema"}
    return {**found, "properties": properties} if "properties" in schema else found
