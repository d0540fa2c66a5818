"""A database that does not answer gives a 503 page in the reader's language (issue 12,
item 7), never a bare 500; other errors stay 500s."""

import pytest
from django.db import OperationalError, ProgrammingError
from django.test import Client
from django.urls import reverse

from finetune import access

pytestmark = pytest.mark.django_db


def _failing(monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(access, "restrict", fail)


def test_a_database_that_does_not_answer_is_a_503_page(alice, monkeypatch):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    _failing(monkeypatch, OperationalError("connection to server at 127.0.0.1 refused"))
    response = client.get(reverse("finetune:job_list"))
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    page = response.content.decode()
    assert "The platform is unavailable" in page and "Nothing you did was lost" in page
    assert "127.0.0.1" not in page


def test_the_503_page_speaks_chinese(alice, monkeypatch):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    _failing(monkeypatch, OperationalError("connection refused"))
    response = client.get(reverse("finetune:job_list"))
    assert response.status_code == 503
    assert "平台暂不可用" in response.content.decode()


def test_a_bad_query_is_still_a_500(alice, monkeypatch):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    _failing(monkeypatch, ProgrammingError("column does not exist"))
    assert client.get(reverse("finetune:job_list")).status_code == 500


def test_a_missing_table_on_sqlite_is_a_500_not_a_wait(alice, monkeypatch):
    """On SQLite "no such table" is an OperationalError too: a bug, shown as one."""
    import sqlite3

    from config.errors import database_unavailable

    def wrapped(cause):
        error = OperationalError(str(cause))
        error.__cause__ = cause
        return error

    assert not database_unavailable(wrapped(sqlite3.OperationalError("no such table: x")))
    assert database_unavailable(wrapped(sqlite3.OperationalError("database is locked")))


def test_a_postgresql_deadlock_is_a_500_and_a_refused_connection_a_503(monkeypatch):
    import psycopg

    from config.errors import database_unavailable

    class Deadlock(psycopg.errors.DeadlockDetected):
        pass

    deadlock = OperationalError("deadlock detected")
    deadlock.__cause__ = Deadlock("deadlock detected")
    assert not database_unavailable(deadlock)
    refused = OperationalError("connection refused")
    refused.__cause__ = psycopg.OperationalError("connection refused")
    assert database_unavailable(refused)
