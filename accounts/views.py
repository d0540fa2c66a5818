from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.forms import SwitchProjectForm
from accounts.projects import SESSION_KEY


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


@login_required
@require_POST
def switch_project(request: HttpRequest) -> HttpResponse:
    form = SwitchProjectForm(request.POST, user=request.user)
    if form.is_valid():
        request.session[SESSION_KEY] = form.cleaned_data["project"]
    else:
        for error in form.errors.get("project", []):
            messages.error(request, error)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "home"
    return redirect(target)
