from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = _("Webhooks")

    def ready(self) -> None:
        # Connects the receivers in every process that changes jobs (the web server, the
        # workers), not only in those that autodiscover the tasks.
        from webhooks import receivers  # noqa: F401
