"""Webhooks in the operators' admin: changed and resent as on the pages; the secret is
not shown here (the project's administrators see it on the webhook's page)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from webhooks import services
from webhooks.forms import WebhookForm
from webhooks.models import Webhook, WebhookDelivery


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm  # the pages' checks: the events offered, the address allowed
    list_display = ["url", "project", "description", "enabled", "created_by", "created_at"]
    list_filter = ["enabled", "project"]
    search_fields = ["url", "description", "project__name"]
    list_select_related = ["project", "created_by"]
    readonly_fields = ["created_by", "created_at"]
    fields = ["project", "url", "description", "events", "enabled", "created_by", "created_at"]

    def save_model(self, request, obj: Webhook, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "webhook",
        "event_type",
        "status",
        "attempts",
        "response_status",
        "duration_ms",
        "next_attempt_at",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id", "webhook__url", "webhook__project__name"]
    list_select_related = ["webhook"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = ["resend_deliveries"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description=_("Resend the selected deliveries"))
    def resend_deliveries(self, request, queryset) -> None:
        sent = sum(services.resend(delivery) for delivery in queryset)
        self.message_user(
            request,
            _("%(count)d message(s) are sent again, with the same id.") % {"count": sent},
            messages.SUCCESS,
        )
        skipped = queryset.count() - sent
        if skipped:
            self.message_user(
                request,
                _("%(count)d are being delivered now and were left alone.") % {"count": skipped},
                messages.WARNING,
            )
