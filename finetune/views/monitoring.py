"""监控 (F7.1): the monitoring tab's data, as JSON for its charts; and the loss curves
of several jobs on one chart (chosen on the list: select → compare).

The tab draws with uPlot from `static/js/monitoring.js`, the comparison from
`static/js/compare.js`; both ask again every few seconds while a job runs.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views import View

from finetune import access, monitoring
from finetune.filters import JobFilterForm
from finetune.inputs import whole_number
from finetune.models import Job
from finetune.views.base import ObjectMixin, project_or_404


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


class JobSampleView(ObjectMixin, View):
    """One sample image of a text-to-image job (its monitoring tab's gallery): only a
    sample of that job's own folder, to whoever may view the job."""

    model = Job
    select_related = ("scenario", "model_repo")

    def get(self, request: HttpRequest, pk: int, name: str) -> HttpResponse:
        file = monitoring.sample_file(self.object, name)
        if file is None:
            raise Http404
        return FileResponse(file.open("rb"), headers={"Cache-Control": "private, max-age=300"})


class JobCompareView(LoginRequiredMixin, View):
    """对比损失曲线: `?pk=1&pk=2…`, the jobs of the current project that the user may
    view, in the order chosen; with `format=json`, the curves alone (its refresh)."""

    template_name = "finetune/job_compare.html"

    def post(self, request: HttpRequest) -> HttpResponse:
        """The list's selection (its checked rows, or all it matches) as this page's
        address, so that a comparison can be kept and shared as a link."""
        if request.POST.get("_all"):
            project = project_or_404(request)
            jobs = access.restrict(Job.objects.filter(project=project), request.user, "view")
            chosen = JobFilterForm(request.POST).filter(jobs).values_list("pk", flat=True)
            pks = list(chosen[: monitoring.MAX_COMPARED])
        else:
            pks = [pk for pk in map(whole_number, request.POST.getlist("pk")) if pk is not None]
        address = reverse("finetune:job_compare")
        return redirect(
            f"{address}?{urlencode({'pk': pks[: monitoring.MAX_COMPARED * 10]}, doseq=True)}"
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        project = project_or_404(request)
        asked = []
        for raw in request.GET.getlist("pk")[: monitoring.MAX_COMPARED * 10]:
            pk = whole_number(raw)
            if pk is not None and pk not in asked:
                asked.append(pk)
        visible = access.restrict(
            Job.objects.filter(project=project, pk__in=asked).select_related(
                "algorithm", "scenario", "pretrained_model", "creator"
            ),
            request.user,
            "view",
        )
        found = {job.pk: job for job in visible}
        jobs = [found[pk] for pk in asked if pk in found][: monitoring.MAX_COMPARED]
        data = monitoring.comparison(jobs)
        if request.GET.get("format") == "json":
            response = JsonResponse(data)
            response["Cache-Control"] = "no-store"
            return response
        unseen = len([pk for pk in asked if pk not in found])
        if unseen:
            messages.warning(
                request,
                _(
                    "%(count)s of the chosen jobs are not shown: they are not in this "
                    "project or you may not view them."
                )
                % {"count": unseen},
            )
        if len(found) > monitoring.MAX_COMPARED:
            messages.info(
                request,
                _("Only the first %(count)s chosen jobs are compared.")
                % {"count": monitoring.MAX_COMPARED},
            )
        context = {
            "jobs": list(zip(jobs, data["jobs"], strict=True)),
            "differences": monitoring.compared_parameters(jobs),
            "config": {
                "url": request.get_full_path(),
                "poll_ms": monitoring.POLL_SECONDS * 1000,
                "labels": monitoring.chart_labels(),
                "data": data,
            },
        }
        return TemplateResponse(request, self.template_name, context)
