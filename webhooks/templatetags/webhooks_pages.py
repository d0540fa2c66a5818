"""Template helpers of the webhooks' pages, and the menu's link to them."""

from __future__ import annotations

from django import template

from accounts.models import Membership
from webhooks.models import WebhookDelivery

register = template.Library()
_ANSWER = "_jingtiao_manages_webhooks"


@register.simple_tag(takes_context=True)
def manages_webhooks(context) -> bool:
    """Whether the user administers the page's current project (asked once a request)."""
    request = context.get("request")
    project = context.get("current_project")
    if request is None or project is None or not request.user.is_authenticated:
        return False
    if not hasattr(request, _ANSWER):
        answer = request.user.is_superuser or (
            Membership.objects.filter(
                project=project, user=request.user, role=Membership.Role.ADMIN
            ).exists()
        )
        setattr(request, _ANSWER, answer)
    return getattr(request, _ANSWER)


_BADGES = {
    # the console's status colours: waiting, under way, done, failed
    WebhookDelivery.Status.PENDING: "status-queued",
    WebhookDelivery.Status.DELIVERING: "status-running",
    WebhookDelivery.Status.SUCCEEDED: "status-succeeded",
    WebhookDelivery.Status.FAILED: "status-failed",
}


@register.filter
def delivery_badge(status: str) -> str:
    """The badge's class for a delivery's status."""
    return _BADGES.get(status, "")
