"""Errors in one shape: DRF's ``{"field": ["message", ...]}`` (``non_field_errors`` for
the whole request, ``detail`` for a refusal), in the request's language. The services'
refusals (Django's ValidationError) and the pages' 404 and 403 become the same."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler


def as_drf(exc: DjangoValidationError, rename: dict[str, str] | None = None) -> dict:
    """A service's refusal as the API's error body, its fields renamed as the API names them."""
    rename = rename or {}
    if not hasattr(exc, "error_dict"):
        return {"non_field_errors": list(exc.messages)}
    errors: dict[str, list[str]] = {}
    for field, found in exc.message_dict.items():
        key = rename.get(field, field)
        if key == "__all__":
            key = "non_field_errors"
        errors.setdefault(key, []).extend(found)
    return errors


def handle(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_drf(exc))
    return exception_handler(exc, context)
