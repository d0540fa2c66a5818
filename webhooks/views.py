"""The pages of a project's webhooks, for its administrators (and site operators).

One gate, `ProjectAdminMixin`: anonymous users go to the login, a project the user
is not in does not exist for them (404), a member who is not its administrator is
refused (403). Webhooks and deliveries are looked up within the project, so an id
from another project is a 404 too. Changes are POSTs; GETs only show.

The signing secret is shown to the project's administrators on the webhook's page
whenever they open it, not once: the platform keeps it as it is (it signs every
message with it), so hiding it later would protect nothing from an administrator,
who could rotate it and read the new one, and would leave a second administrator
setting up a receiver no way to it but a rotation that breaks the receivers in use.
It is never in a list, a message or the Django admin.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from accounts.models import Membership, Project
from finetune.views.base import safe_next
from webhooks import services
from webhooks.forms import WebhookForm
from webhooks.models import Event, Webhook, WebhookDelivery

DELIVERIES_PER_PAGE = 25


def administered_project(user, project_id: int) -> Project:
    """The project if `user` administers it; 404 if they are not in it, else 403."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise Http404
    if user.is_superuser:
        return project
    role = (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )
    if role is None:
        raise Http404
    if role != Membership.Role.ADMIN:
        raise PermissionDenied
    return project


class ProjectAdminMixin(LoginRequiredMixin):
    project: Project

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.project = administered_project(request.user, kwargs["project_id"])
        self.fetch(**kwargs)
        return super().dispatch(request, *args, **kwargs)

    def fetch(self, **kwargs) -> None:
        """Look up, within the project, what the URL names."""

    def context(self, **extra) -> dict:
        return {"project": self.project, **extra}

    def list_url(self) -> str:
        return reverse("webhooks:webhook_list", args=[self.project.pk])


class WebhookMixin(ProjectAdminMixin):
    """A view of one webhook of the project."""

    webhook: Webhook

    def fetch(self, pk: int, **kwargs) -> None:
        self.webhook = get_object_or_404(Webhook, project=self.project, pk=pk)

    def detail_url(self) -> str:
        return reverse("webhooks:webhook_detail", args=[self.project.pk, self.webhook.pk])


class WebhookListView(ProjectAdminMixin, View):
    def get(self, request: HttpRequest, project_id: int) -> HttpResponse:
        latest = WebhookDelivery.objects.filter(webhook=OuterRef("pk")).order_by(
            "-created_at", "-id"
        )
        webhooks = Webhook.objects.filter(project=self.project).annotate(
            last_status=Subquery(latest.values("status")[:1]),
            last_event=Subquery(latest.values("event_type")[:1]),
            last_at=Subquery(latest.values("created_at")[:1]),
        )
        statuses = dict(WebhookDelivery.Status.choices)
        events = dict(Event.choices)
        rows = [
            (hook, statuses.get(hook.last_status, ""), events.get(hook.last_event, ""))
            for hook in webhooks
        ]
        return TemplateResponse(request, "webhooks/webhook_list.html", self.context(rows=rows))


class WebhookFormView(ProjectAdminMixin, View):
    """Create a webhook (no pk) or change one."""

    def fetch(self, pk: int | None = None, **kwargs) -> None:
        self.pk = pk

    def instance(self) -> Webhook:
        if self.pk is None:
            return Webhook(project=self.project, created_by=self.request.user)
        return get_object_or_404(Webhook, project=self.project, pk=self.pk)

    def render(self, form: WebhookForm, status: int = 200) -> HttpResponse:
        title = _("New webhook") if self.pk is None else _("Change webhook")
        context = self.context(form=form, title=title, creating=self.pk is None)
        return TemplateResponse(self.request, "webhooks/webhook_form.html", context, status=status)

    def get(self, request: HttpRequest, project_id: int, pk: int | None = None) -> HttpResponse:
        initial = {"events": [], "enabled": True} if self.pk is None else None
        return self.render(WebhookForm(instance=self.instance(), initial=initial))

    def post(self, request: HttpRequest, project_id: int, pk: int | None = None) -> HttpResponse:
        form = WebhookForm(request.POST, instance=self.instance())
        if not form.is_valid():
            return self.render(form, status=400)
        webhook = form.save()
        if self.pk is None:
            messages.success(
                request,
                _("Webhook created. Give its secret to the receiver to check signatures with."),
            )
        else:
            messages.success(request, _("Webhook saved."))
        return redirect("webhooks:webhook_detail", self.project.pk, webhook.pk)


class WebhookDetailView(WebhookMixin, View):
    """The webhook, its secret, and its deliveries, newest first; htmx gets the table."""

    def get(self, request: HttpRequest, project_id: int, pk: int) -> HttpResponse:
        deliveries = self.webhook.deliveries.order_by("-created_at", "-id")
        page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
        context = self.context(
            webhook=self.webhook,
            page_obj=page,
            is_paginated=page.paginator.num_pages > 1,
            deliveries=list(page.object_list),
            back_to=request.get_full_path(),
        )
        partial = request.htmx and not request.htmx.boosted
        template = "webhooks/_delivery_table.html" if partial else "webhooks/webhook_detail.html"
        return TemplateResponse(request, template, context)


class WebhookConfirmView(WebhookMixin, View):
    """GET asks, POST does: a rotation of the secret, a deletion."""

    heading = question = button = ""
    danger = False

    def get(self, request: HttpRequest, project_id: int, pk: int) -> HttpResponse:
        context = self.context(
            webhook=self.webhook,
            heading=self.heading,
            question=self.question % {"name": self.webhook},
            button=self.button,
            danger=self.danger,
            cancel_url=self.detail_url(),
        )
        return TemplateResponse(request, "webhooks/webhook_confirm.html", context)

    def post(self, request: HttpRequest, project_id: int, pk: int) -> HttpResponse:
        return redirect(self.perform())

    def perform(self) -> str:
        """Do it; where to go next."""
        raise NotImplementedError


class WebhookRotateView(WebhookConfirmView):
    heading = button = gettext_lazy("Rotate the secret")
    question = gettext_lazy(
        "Make a new secret for “%(name)s”? Messages are signed with the old one as well for "
        "the next 24 hours, so the receiver has time to take the new one."
    )

    def perform(self) -> str:
        services.rotate_secret(self.webhook)
        messages.success(self.request, _("The webhook has a new secret."))
        return self.detail_url()


class WebhookDeleteView(WebhookConfirmView):
    heading = gettext_lazy("Delete the webhook")
    question = gettext_lazy("Delete the webhook “%(name)s” and the record of its deliveries?")
    button = gettext_lazy("Confirm the deletion")
    danger = True

    def perform(self) -> str:
        self.webhook.delete()
        messages.success(self.request, _("Webhook deleted."))
        return self.list_url()


class WebhookTestView(WebhookMixin, View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, project_id: int, pk: int) -> HttpResponse:
        if not self.webhook.enabled:
            messages.error(request, _("The webhook is turned off: turn it on to send to it."))
        else:
            services.send_test(self.webhook)
            messages.success(request, _("A test event is on its way."))
        return redirect(self.detail_url())


class DeliveryResendView(WebhookMixin, View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, project_id: int, pk: int, delivery: int) -> HttpResponse:
        found = get_object_or_404(WebhookDelivery, webhook=self.webhook, pk=delivery)
        if not self.webhook.enabled:
            messages.error(request, _("The webhook is turned off: turn it on to send to it."))
        elif services.resend(found):
            messages.success(request, _("The message is sent again, with the same id."))
        else:
            messages.error(request, _("An attempt is under way: wait for its outcome."))
        return redirect(safe_next(request, self.detail_url()))
