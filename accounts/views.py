from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from accounts.forms import SwitchProjectForm
from accounts.projects import SESSION_KEY
from accounts.redirects import local_path


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def client_address(request: HttpRequest) -> str | None:
    """The address a login is counted against (JINGTIAO_PROXY_COUNT): the connection's,
    or behind N trusted proxies the one the outermost of them saw."""
    count = settings.JINGTIAO_PROXY_COUNT
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    if count and len(forwarded) >= count:
        return forwarded[-count]
    return request.META.get("REMOTE_ADDR")


def login_username(request: HttpRequest, credentials: dict | None = None) -> str:
    """The name a login is counted under: as typed, cut to the longest a user name may be
    (the login form does not bound it, and django-axes stores it in a 255-character column)."""
    source = credentials if credentials else getattr(request, "POST", {})
    name = source.get("username") or ""
    model = get_user_model()
    longest = model._meta.get_field(model.USERNAME_FIELD).max_length
    return str(name).replace("\x00", "")[:longest]


def locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a login locked out: the login page, saying why and for how long."""
    minutes = max(1, int(settings.AXES_COOLOFF_TIME.total_seconds() // 60))
    # Unbound: a bound form would try the password again.
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    lockout = ngettext(
        "Too many failed logins for this user from your address. Try again in %(minutes)d minute.",
        "Too many failed logins for this user from your address. Try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}
    context = {"form": form, "lockout": lockout, "next": request.POST.get("next", "")}
    return TemplateResponse(request, "accounts/login.html", context, status=429).render()


@login_required
@require_POST
def switch_project(request: HttpRequest) -> HttpResponse:
    form = SwitchProjectForm(request.POST, user=request.user)
    if form.is_valid():
        request.session[SESSION_KEY] = form.cleaned_data["project"]
    else:
        for error in form.errors.get("project", []):
            messages.error(request, error)
    return redirect(local_path(request, request.POST.get("next", "")) or "home")
