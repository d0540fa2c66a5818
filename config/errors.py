"""Error pages. A database that does not answer is a 503 that says so, not a 500:
the platform is unavailable for a while, nothing is broken for good, and the page
itself must render without the database (no context processors, no user)."""

from __future__ import annotations

import sys

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views.defaults import server_error as django_server_error

UNAVAILABLE = (OperationalError, InterfaceError)


def database_unavailable(error: BaseException | None) -> bool:
    """Whether `error` (or what it was raised from) is the database not answering."""
    while error is not None:
        if isinstance(error, UNAVAILABLE):
            return True
        if isinstance(error, DatabaseError):
            return False  # a bad query: a real 500
        error = error.__cause__ or error.__context__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    if database_unavailable(sys.exc_info()[1]):
        response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = "30"
        return response
    return django_server_error(request)
