from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = _("Scheduling and resources")

    def ready(self) -> None:
        # Connects the job_changed receiver in every process, the web server's
        # included, not only in Celery workers that autodiscover the tasks.
        from scheduler import tasks  # noqa: F401
