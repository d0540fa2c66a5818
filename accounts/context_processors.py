from accounts.projects import projects_of


def console(request) -> dict:
    """What the console layout needs on every page: the user's projects."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"user_projects": projects_of(user), "current_project": request.project}
