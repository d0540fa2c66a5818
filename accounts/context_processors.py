from urllib.parse import quote

from accounts.projects import current_project, request_projects


def console(request) -> dict:
    """What the console layout needs on every page: the user's projects."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_projects": request_projects(request),
        "current_project": current_project(request),
        # The ?next= of the links on this page, quoted once rather than per link.
        "next_here": quote(request.get_full_path(), safe="/"),
    }
