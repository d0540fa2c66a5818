"""Operations on jobs (F2, F8) and the batch delete of the list's edit mode (F8.3)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from accounts.projects import current_project
from finetune import access
from finetune.filters import JobFilterForm
from finetune.forms.jobs import ChangeDurationForm, ChangePriorityForm, duration_initial
from finetune.inputs import whole_number
from finetune.models import Job
from finetune.services import jobs as services
from finetune.views.base import ObjectActionView, safe_next

BULK_LIST_LIMIT = 500


class JobActionView(ObjectActionView):
    model = Job
    detail_url_name = "finetune:job_detail"


class ChangeDurationView(JobActionView):
    """调整使用时长 (F8.1): moves the deadline; the workload is not restarted."""

    action = "change_duration"
    template_name = "finetune/job_duration.html"
    form_class = ChangeDurationForm
    success_message = gettext_lazy("The duration of “%(name)s” was changed.")

    def initial(self) -> dict:
        return duration_initial(self.object.duration)

    def perform(self, form) -> None:
        services.change_duration(self.request.user, self.object, form.cleaned_data["duration"])


class ChangePriorityView(JobActionView):
    """调整优先级 (F2)."""

    action = "change_priority"
    template_name = "finetune/job_priority.html"
    form_class = ChangePriorityForm
    success_message = gettext_lazy("The priority of “%(name)s” was changed.")

    def initial(self) -> dict:
        return {"priority": self.object.priority}

    def perform(self, form) -> None:
        services.change_priority(self.request.user, self.object, form.cleaned_data["priority"])


class StopJobView(JobActionView):
    """停止 (F8.2), after a confirmation."""

    action = "stop"
    template_name = "finetune/job_confirm.html"
    success_message = gettext_lazy("The job “%(name)s” was stopped.")

    def perform(self, form) -> None:
        services.stop_job(self.request.user, self.object)


class DeleteJobView(JobActionView):
    """删除 (F8.3), after a confirmation; a queued or running job is stopped first."""

    action = "delete"
    template_name = "finetune/job_confirm.html"
    success_message = gettext_lazy("The job “%(name)s” was deleted.")

    def perform(self, form) -> None:
        services.delete_job(self.request.user, self.object)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        response = super().post(request, pk)
        # The detail page of a deleted job is gone: land on the list instead.
        if response.status_code == 302 and response["Location"].startswith(
            reverse("finetune:job_detail", args=[pk])
        ):
            return redirect("finetune:job_list")
        return response

    def success_url(self) -> str:
        return reverse("finetune:job_list")


class BulkDeleteJobsView(LoginRequiredMixin, View):
    """Check boxes -> this confirm page listing the chosen jobs -> delete (STYLE.md).

    With `_all`, the list's filter runs again here rather than trusting posted ids.
    """

    def chosen(self, request: HttpRequest):
        project = current_project(request)
        jobs = Job.objects.filter(project=project) if project else Job.objects.none()
        jobs = access.restrict(jobs, request.user, "delete").select_related("creator")
        if request.POST.get("_all"):
            return JobFilterForm(request.POST).filter(jobs)
        ids = [pk for pk in map(whole_number, request.POST.getlist("pk")) if pk is not None]
        return jobs.filter(pk__in=ids).order_by("-created_at", "-id")

    def post(self, request: HttpRequest) -> HttpResponse:
        jobs = self.chosen(request)
        back = safe_next(request, reverse("finetune:job_list"))
        if request.POST.get("confirm"):
            deleted = services.delete_jobs(request.user, jobs)
            messages.success(request, _("%(count)s job(s) deleted.") % {"count": deleted})
            return redirect(back)
        shown = list(jobs[: BULK_LIST_LIMIT + 1])
        if not shown:
            messages.error(request, _("Choose the jobs you may delete first."))
            return redirect(back)
        total = jobs.count() if len(shown) > BULK_LIST_LIMIT else len(shown)
        posted = {pk for pk in map(whole_number, request.POST.getlist("pk")) if pk is not None}
        context = {
            # the rows checked (for a comparison, say) may hold jobs the user may not delete
            "left_out": 0 if request.POST.get("_all") else len(posted) - total,
            "jobs": shown[:BULK_LIST_LIMIT],
            "more": len(shown) > BULK_LIST_LIMIT,
            "total": total,
            "select_all": bool(request.POST.get("_all")),
            "filters": {k: request.POST.get(k, "") for k in JobFilterForm.base_fields},
            "next": back,
        }
        return TemplateResponse(request, "finetune/job_bulk_delete.html", context)
