"""The current project of a request: the one the user chose in the top bar,
else the first project they belong to."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Project

SESSION_KEY = "jingtiao_project_id"


def projects_of(user) -> list[Project]:
    if not user.is_authenticated:
        return []
    if user.is_superuser:
        return list(Project.objects.all())
    return list(Project.objects.filter(memberships__user=user))


def current_project(request: HttpRequest) -> Project | None:
    projects = projects_of(request.user)
    chosen = request.session.get(SESSION_KEY)
    for project in projects:
        if project.pk == chosen:
            return project
    return projects[0] if projects else None
