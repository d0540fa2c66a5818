"""Personal API tokens: made, looked up and revoked here only (accounts.models.ApiToken).

A token is ``jt_`` and 43 URL-safe characters (256 random bits): long enough that a
plain SHA-256 is the right hash (a slow password hash protects guessable secrets,
and would cost every API request tens of milliseconds).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import ApiToken, Project
from accounts.projects import projects_of

PREFIX = "jt_"
SHOWN_PREFIX = 10  # "jt_" and 7 characters: enough to tell one's tokens apart
#: last_used_at is written at most this often per token, not on every request
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def issue(
    user, *, name: str, projects: Iterable[Project], expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token of ``user`` for ``projects`` (each one the user belongs to) and its
    secret, which is not kept anywhere and so can be shown only now."""
    projects = list(projects)
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = [_("This field is required.")]
    if not projects:
        errors["projects"] = [_("Choose at least one project.")]
    mine = {project.pk for project in projects_of(user)}
    if any(project.pk not in mine for project in projects):
        errors["projects"] = [_("You may only choose projects you belong to.")]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = [_("The expiry must lie in the future.")]
    if errors:
        raise ValidationError(errors)
    key = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[:SHOWN_PREFIX],
        key_hash=hash_key(key),
        expires_at=expires_at,
    )
    token.projects.set(projects)
    return token, key


def authenticate(key: str) -> ApiToken | None:
    """The usable token whose secret is ``key``, its last use noted; None otherwise."""
    if not key.startswith(PREFIX):
        return None
    token = ApiToken.objects.usable().select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke(user, token_id: int) -> bool:
    """Revoke one of ``user``'s own tokens; False if it was not theirs or revoked already."""
    return bool(
        ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


def project_ids(token: ApiToken) -> set[int]:
    """The projects a token may act in, asked once per request (api/permissions.py)."""
    cached = getattr(token, "_project_ids", None)
    if cached is None:
        cached = token._project_ids = set(token.projects.values_list("pk", flat=True))
    return cached
