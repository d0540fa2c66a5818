"""The current project of a request: the one the user chose in the top bar,
else the first project they belong to."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Project

SESSION_KEY = "jingtiao_project_id"
_PROJECTS = "_jingtiao_projects"


def projects_of(user) -> list[Project]:
    if not user.is_authenticated:
        return []
    if user.is_superuser:
        return list(Project.objects.all())
    return list(Project.objects.filter(memberships__user=user))


def request_projects(request: HttpRequest) -> list[Project]:
    """The user's projects, looked up once per request however often asked."""
    if not hasattr(request, _PROJECTS):
        setattr(request, _PROJECTS, projects_of(request.user))
    return getattr(request, _PROJECTS)


def current_project(request: HttpRequest) -> Project | None:
    projects = request_projects(request)
    chosen = request.session.get(SESSION_KEY)
    found = next((project for project in projects if project.pk == chosen), None)
    return found or (projects[0] if projects else None)
