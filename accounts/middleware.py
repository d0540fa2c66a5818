from django.utils.functional import SimpleLazyObject

from accounts.projects import current_project


class CurrentProjectMiddleware:
    """Sets `request.project`, looked up only when a view or template uses it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.project = SimpleLazyObject(lambda: current_project(request))
        return self.get_response(request)
