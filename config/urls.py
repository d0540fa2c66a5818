from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from config.health import healthz, livez
from finetune.views import home
from finetune.views.report import report

handler500 = "config.errors.server_error"

admin.site.site_header = _("Jingtiao operations")
admin.site.site_title = _("Jingtiao")
admin.site.index_title = _("Operations")

urlpatterns = [
    path("", home, name="home"),
    path("", include("finetune.urls")),
    path("accounts/", include("accounts.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("api/jobs/<int:job_id>/report/", report, name="job_report"),
    path("api/v1/", include("api.urls")),
    path("v1/", include("api.openai.urls")),
    path("projects/<int:project_id>/webhooks/", include("webhooks.urls")),
]
