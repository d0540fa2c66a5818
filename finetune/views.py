"""Pages of the fine-tuning module. Every object comes through `access.restrict`."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.generic import ListView

from accounts.projects import current_project
from finetune.access import restrict
from finetune.models import Job


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("finetune:job_list")


class JobListView(LoginRequiredMixin, ListView):
    """大模型精调: the jobs of the current project that the user may see."""

    template_name = "finetune/job_list.html"
    context_object_name = "jobs"
    paginate_by = 20

    def get_queryset(self):
        project = current_project(self.request)
        if project is None:
            return Job.objects.none()
        jobs = Job.objects.filter(project=project).select_related(
            "creator", "scenario", "algorithm", "model_repo", "spec_in_use"
        )
        return restrict(jobs, self.request.user, "view").order_by("-created_at", "-id")
