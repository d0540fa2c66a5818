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
