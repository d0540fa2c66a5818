"""API 令牌: a user's own page of personal API tokens (accounts/tokens.py)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import tokens
from accounts.forms import ApiTokenForm
from accounts.models import ApiToken


def _render(request: HttpRequest, form: ApiTokenForm, *, key: str = "", status: int = 200):
    rows = ApiToken.objects.filter(user=request.user).prefetch_related("projects")
    context = {
        "form": form,
        "tokens": rows,
        "new_key": key,
        "now": timezone.now(),
        "api_docs_url": reverse("api:docs"),
    }
    return TemplateResponse(request, "accounts/api_tokens.html", context, status=status)


@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The list and the form to make one; a token made is shown here once, never again."""
    if request.method != "POST":
        return _render(request, ApiTokenForm(user=request.user))
    form = ApiTokenForm(request.POST, user=request.user)
    if not form.is_valid():
        return _render(request, form, status=400)
    data = form.cleaned_data
    days = data.get("lifetime")
    try:
        _token, key = tokens.issue(
            request.user,
            name=data["name"],
            projects=data["projects"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
    except ValidationError as exc:
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return _render(request, form, status=400)
    # Not a redirect: the secret must not sit in a URL or a session to show it again.
    response = _render(request, ApiTokenForm(user=request.user), key=key, status=201)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def revoke_api_token(request: HttpRequest, pk: int) -> HttpResponse:
    if tokens.revoke(request.user, pk):
        messages.success(request, _("The token was revoked: it no longer works."))
    return redirect("accounts:api_tokens")
