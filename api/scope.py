"""What an API request may reach: the objects the user may act on (finetune/access.py,
the pages' one gate), in the projects the token was made for."""

from __future__ import annotations

from django.db import models
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions

from accounts import tokens
from accounts.models import ApiToken, Project
from accounts.projects import projects_of
from finetune import access


def project_ids(request) -> set[int] | None:
    """The projects a token may act in; None for a session (the user's every project)."""
    token = request.auth
    return tokens.project_ids(token) if isinstance(token, ApiToken) else None


def projects(request) -> list[Project]:
    """The projects this request may act in: the user's, narrowed to the token's."""
    allowed = project_ids(request)
    return [p for p in projects_of(request.user) if allowed is None or p.pk in allowed]


def restrict(queryset: models.QuerySet, request, action: str = "view") -> models.QuerySet:
    found = access.restrict(queryset, request.user, action)
    allowed = project_ids(request)
    return found if allowed is None else found.filter(project_id__in=allowed)


def get(queryset: models.QuerySet, request, action: str = "view", **lookup) -> models.Model:
    """One object the request may see, else 404; a 403 where it is seen but ``action``
    is not allowed (as the pages answer)."""
    try:
        obj = restrict(queryset, request, "view").get(**lookup)
    except queryset.model.DoesNotExist:
        raise Http404 from None
    if action != "view" and not access.can(request.user, action, obj):
        raise exceptions.PermissionDenied()
    return obj


def project(request, wanted) -> Project:
    """The project a write names (its id), or the only one the request may act in."""
    mine = projects(request)
    if wanted in (None, ""):
        if len(mine) == 1:
            return mine[0]
        raise exceptions.ValidationError(
            {"project": [_("Name the project: this token may act in several.")]}
        )
    try:
        wanted = int(wanted)
    except (TypeError, ValueError):
        raise exceptions.ValidationError({"project": [_("A project's id.")]}) from None
    found = next((p for p in mine if p.pk == wanted), None)
    if found is None:
        raise exceptions.ValidationError(
            {"project": [_("You may not act in this project with this token.")]}
        )
    return found
