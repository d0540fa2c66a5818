"""Error pages. A database that does not answer is a 503 that says so, not a 500:
the platform is unavailable for a while, nothing is broken for good, and the page
itself must render without the database (no context processors, no user)."""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views.defaults import server_error as django_server_error

UNAVAILABLE = (OperationalError, InterfaceError)


#: PostgreSQL's words for "no connection": connection exceptions (class 08) and an
#: operator's shutdown (57P01-57P03). A deadlock or a time-out is a real error.
_NO_CONNECTION = ("08", "57P01", "57P02", "57P03")
#: SQLite's (the embedded default): the file held by another writer, or not openable.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database")


def database_unavailable(error: BaseException | None) -> bool:
    """Whether `error` is the database not answering, not a query it refused: on SQLite a
    missing table is an OperationalError too, and that is a bug to show, not to wait out."""
    if not isinstance(error, UNAVAILABLE):
        return False
    if isinstance(error, InterfaceError):
        return True  # the connection is closed
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", "absent")
    if sqlstate != "absent":  # psycopg: no state means no server answered at all
        return sqlstate is None or sqlstate.startswith(_NO_CONNECTION)
    if type(cause).__module__ == "sqlite3":
        return any(words in str(cause) for words in _SQLITE_UNAVAILABLE)
    return True


def server_error(request: HttpRequest) -> HttpResponse:
    if database_unavailable(sys.exc_info()[1]):
        response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = "30"
        return response
    return django_server_error(request)
