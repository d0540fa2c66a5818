"""Every page of the module, generically: anonymous -> login, no permission -> 404/403,
permitted -> 200; and list pages keep a query count that does not grow with the rows."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from accounts.models import Access
from tests import factories

pytestmark = pytest.mark.django_db

LIST_PAGES = ["job_list", "job_create", "dataset_list", "dataset_create"]
LIST_PAGES += ["modelrepo_list", "modelrepo_create"]
#: object page -> (the object it needs, the action it takes)
OBJECT_PAGES = {
    "job_detail": ("job", "view"),
    "job_clone": ("job", "clone"),
    "job_duration": ("job", "change_duration"),
    "job_priority": ("job", "change_priority"),
    "job_stop": ("job", "stop"),
    "job_delete": ("job", "delete"),
    "dataset_detail": ("dataset", "view"),
    "modelrepo_detail": ("repo", "view"),
}


def _object(kind: str, project, creator, level):
    if kind == "dataset":
        return factories.dataset(project, creator, level=level)
    if kind == "repo":
        return factories.model_repo(project, creator, level=level)
    return factories.job(project, creator, level=level)


@pytest.mark.parametrize("name", LIST_PAGES)
def test_project_pages_send_anonymous_users_to_the_login(client, name):
    response = client.get(reverse(f"finetune:{name}"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize("name", LIST_PAGES)
def test_project_pages_open_for_a_member(client, alice, name):
    client.force_login(alice)
    assert client.get(reverse(f"finetune:{name}")).status_code == 200


@pytest.mark.parametrize("name", OBJECT_PAGES)
def test_object_pages_send_anonymous_users_to_the_login(client, project, alice, name):
    obj = _object(OBJECT_PAGES[name][0], project, alice, Access.READ_WRITE)
    response = client.get(reverse(f"finetune:{name}", args=[obj.pk]))
    assert response.status_code == 302


@pytest.mark.parametrize("name", OBJECT_PAGES)
def test_object_pages_are_not_found_for_an_outsider(client, project, alice, charlie, name):
    obj = _object(OBJECT_PAGES[name][0], project, alice, Access.READ_WRITE)
    client.force_login(charlie)
    assert client.get(reverse(f"finetune:{name}", args=[obj.pk])).status_code == 404


@pytest.mark.parametrize("name", OBJECT_PAGES)
def test_object_pages_refuse_a_read_only_member_what_only_writers_may(
    client, project, alice, bob, name
):
    kind, action = OBJECT_PAGES[name]
    obj = _object(kind, project, alice, Access.READ_ONLY)
    client.force_login(bob)
    expected = 200 if action in ("view", "clone") else 403
    assert client.get(reverse(f"finetune:{name}", args=[obj.pk])).status_code == expected


@pytest.mark.parametrize("name", OBJECT_PAGES)
def test_object_pages_open_for_the_creator(client, project, alice, name):
    obj = _object(OBJECT_PAGES[name][0], project, alice, Access.NONE)
    client.force_login(alice)
    assert client.get(reverse(f"finetune:{name}", args=[obj.pk])).status_code == 200


def _fill(kind: str, project, alice, bob, count: int) -> None:
    for index in range(count):
        creator = alice if index % 2 else bob
        _object(kind, project, creator, Access.READ_ONLY)


@pytest.mark.parametrize(
    ("name", "kind", "baseline"),
    # The job list's count includes planning the queue afresh (the cache is cold):
    # five queries of the snapshot (one the settled jobs' typical share of their
    # duration, for the expected starts), whatever the number of rows.
    [("job_list", "job", 19), ("dataset_list", "dataset", 12), ("modelrepo_list", "repo", 12)],
)
def test_list_pages_keep_their_query_count_however_many_rows(
    client, project, alice, bob, django_assert_max_num_queries, name, kind, baseline
):
    client.force_login(alice)
    url = reverse(f"finetune:{name}")
    _fill(kind, project, alice, bob, 3)
    with django_assert_max_num_queries(baseline):
        client.get(url)
    _fill(kind, project, alice, bob, 17)
    cache.clear()  # as cold as the first time: the queue is planned afresh again
    with django_assert_max_num_queries(baseline):
        response = client.get(url, {"per_page": 50})
    assert len(response.context["rows"]) == 20
