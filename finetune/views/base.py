"""Generic views every object type of the module declares itself with (STYLE.md, NetBox).

One permission gate: objects come through `access.restrict`/`get_for` before any
lookup, so what a user may not see is a 404; an object the user sees but may not
act on is a 403, and `allowed_actions` decides which buttons are drawn at all.
htmx: one view, two renderings; a request from htmx gets the partial template.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from accounts.models import Project
from accounts.projects import current_project
from accounts.redirects import local_path
from finetune import access

PAGE_SIZES = (10, 20, 50, 100)


def safe_next(request: HttpRequest, fallback: str) -> str:
    """Where to go after an action: the page it came from, if it is ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    return local_path(request, target) or fallback


def add_service_errors(form, exc: ValidationError, *subforms) -> None:
    """A service's refusal shown on the form: on the named fields (of `form`, or of one
    of its `subforms`, such as the job form's parameters), else above the form."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.error_dict.items():
        owner = next((sub for sub in subforms if field in sub.fields), form)
        owner.add_error(field if field in owner.fields else None, errors)


def project_or_404(request: HttpRequest) -> Project:
    project = current_project(request)
    if project is None:
        raise Http404
    return project


class ObjectListView(LoginRequiredMixin, View):
    """The current project's objects the user may view: filtered, sorted, paginated."""

    model: type[models.Model]
    template_name: str
    partial_template_name: str
    select_related: tuple[str, ...] = ()
    filter_form_class: type | None = None
    default_ordering: tuple[str, ...] = ("-created_at", "-id")
    paginate_by = 20

    def get_queryset(self, project: Project | None) -> models.QuerySet:
        if project is None:
            return self.model.objects.none()
        objects = self.model.objects.filter(project=project).select_related(*self.select_related)
        return access.restrict(objects, self.request.user, "view")

    def filtered(self, data, project: Project | None):
        """The filter form bound to `data` and the objects it selects; shared with bulk views."""
        objects = self.get_queryset(project)
        if self.filter_form_class is None:
            return None, objects.order_by(*self.default_ordering)
        form = self.filter_form_class(data)
        return form, form.filter(objects)

    def per_page(self) -> int:
        try:
            wanted = int(self.request.GET.get("per_page", self.paginate_by))
        except ValueError:
            return self.paginate_by
        return wanted if wanted in PAGE_SIZES else self.paginate_by

    def get(self, request: HttpRequest) -> HttpResponse:
        project = current_project(request)
        form, objects = self.filtered(request.GET, project)
        page = Paginator(objects, self.per_page()).get_page(request.GET.get("page"))
        rows = list(page.object_list)
        allowed = access.allowed_actions_for_many(request.user, rows)
        context = {
            "filter_form": form,
            "page_obj": page,
            "rows": [(obj, allowed.get(obj.pk, set())) for obj in rows],
            "is_paginated": page.paginator.num_pages > 1,
            "edit_mode": request.GET.get("edit") == "1",
            **self.extra_context(project),
            **self.rows_context(rows),
        }
        partial = request.htmx and not request.htmx.boosted
        template = self.partial_template_name if partial else self.template_name
        return TemplateResponse(request, template, context)

    def extra_context(self, project: Project | None) -> dict:
        return {}

    def rows_context(self, rows: list) -> dict:
        """What the table needs about the rows of this page, beyond the rows."""
        return {}


class ObjectMixin(LoginRequiredMixin):
    """Fetch the object through the gate: 404 if invisible, 403 if `action` is not allowed."""

    model: type[models.Model]
    action = "view"
    select_related: tuple[str, ...] = ()

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        queryset = self.model.objects.select_related(*self.select_related)
        self.object = access.get_for(queryset, request.user, "view", pk=kwargs["pk"])
        if self.action != "view" and not access.can(request.user, self.action, self.object):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)


class ObjectDetailView(ObjectMixin, View):
    template_name: str

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        context = {
            "object": self.object,
            "actions": access.allowed_actions(request.user, self.object),
            **self.extra_context(),
        }
        return TemplateResponse(request, self.template_name, context)

    def extra_context(self) -> dict:
        return {}


class ObjectActionView(ObjectMixin, View):
    """GET shows the confirmation or the small form; POST performs `perform`.

    A refusal from the service (ValidationError) is shown on the same page.
    """

    template_name: str
    detail_url_name: str
    form_class: type | None = None
    success_message = ""

    def get_form(self, data=None):
        if self.form_class is None:
            return None
        return self.form_class(data, initial=self.initial())

    def initial(self) -> dict:
        return {}

    def render(self, form, error: str = "", status: int = 200) -> HttpResponse:
        context = {"object": self.object, "form": form, "error": error}
        context["next"] = safe_next(self.request, "")
        return TemplateResponse(self.request, self.template_name, context, status=status)

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self.render(self.get_form())

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        form = self.get_form(request.POST)
        if form is not None and not form.is_valid():
            return self.render(form, status=400)
        try:
            self.perform(form)
        except ValidationError as exc:
            return self.render(form, error=" ".join(exc.messages), status=400)
        if self.success_message:
            messages.success(request, self.success_message % {"name": str(self.object)})
        return redirect(safe_next(request, self.success_url()))

    def perform(self, form) -> None:
        raise NotImplementedError

    def success_url(self) -> str:
        return reverse(self.detail_url_name, args=[self.object.pk])
