"""监控 (F7.1): the monitoring tab's data, as JSON for its charts.

The tab draws with uPlot from `static/js/monitoring.js`; it asks this view again
every few seconds while the job runs, and when the user picks another range.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views import View

from finetune import monitoring
from finetune.models import Job
from finetune.views.base import ObjectMixin


class JobMetricsView(ObjectMixin, View):
    model = Job

    def get(self, request: HttpRequest, pk: int) -> JsonResponse:
        key = request.GET.get("range") or monitoring.DEFAULT_RANGE
        try:
            data = monitoring.snapshot(self.object, key)
        except monitoring.BadRange as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        response = JsonResponse(data)
        response["Cache-Control"] = "no-store"
        return response
