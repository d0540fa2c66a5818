"""F9.4 on every page and action, generated: who x which operation x others' access.

A user who may not view gets 404, one who may view but not act gets 403 and no
button; the creator, project administrators and the site operator may do all.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Access
from finetune import access
from finetune.models import Job, JobStatus
from tests import factories

pytestmark = pytest.mark.django_db

F94 = {
    Access.READ_WRITE: set(access.JOB_ACTIONS),
    Access.READ_ONLY: {"view", "clone"},
    Access.NONE: set(),
}
#: who -> (fixture, what they may do at each level); None means "as F9.4 says".
CAST = {
    "creator": ("alice", None),
    "read_write_or_less_member": ("bob", "f94"),
    "project_admin": ("dora", None),
    "site_admin": ("admin", None),
    "outsider": ("charlie", "nothing"),
}
URLS = {
    "view": "finetune:job_detail",
    "clone": "finetune:job_clone",
    "change_duration": "finetune:job_duration",
    "change_priority": "finetune:job_priority",
    "stop": "finetune:job_stop",
    "delete": "finetune:job_delete",
}
POSTS = {
    "change_duration": {"duration_preset": "48"},
    "change_priority": {"priority": "40"},
    "stop": {},
    "delete": {},
}


def _allowed(rule: str | None, level: str, action: str) -> tuple[bool, bool]:
    """(may view, may do action) for a member of the cast."""
    if rule is None:
        return True, True
    if rule == "nothing":
        return False, False
    return bool(F94[level]), action in F94[level]


def _effect_happened(job: Job, action: str) -> bool:
    found = Job.objects.filter(pk=job.pk).first()
    if action == "delete":
        return found is None
    if action == "stop":
        return found.status == JobStatus.STOPPED
    if action == "change_duration":
        return found.duration.total_seconds() == 48 * 3600
    return found.priority == 40


@pytest.mark.parametrize("level", list(Access))
@pytest.mark.parametrize("action", access.JOB_ACTIONS)
@pytest.mark.parametrize("who", CAST)
def test_each_user_gets_exactly_what_f94_allows(
    request, client, project, alice, bob, dora, charlie, admin, who, action, level
):
    job = factories.job(project, alice, level=level)
    fixture, rule = CAST[who]
    user = request.getfixturevalue(fixture)
    may_view, may_act = _allowed(rule, level, action)
    client.force_login(user)
    url = reverse(URLS[action], args=[job.pk])
    expected = 200 if may_act else (403 if may_view else 404)
    assert client.get(url).status_code == expected
    if action in POSTS:
        response = client.post(url, POSTS[action])
        assert response.status_code == (302 if may_act else expected)
        assert _effect_happened(job, action) is may_act


@pytest.mark.parametrize("level", list(Access))
def test_the_operations_menu_draws_only_the_buttons_the_member_may_use(
    client, project, alice, bob, level
):
    job = factories.job(project, alice, level=level)
    client.force_login(bob)
    detail = client.get(reverse("finetune:job_detail", args=[job.pk]))
    if not F94[level]:
        assert detail.status_code == 404
        return
    page = detail.content.decode()
    for action, url_name in URLS.items():
        drawn = reverse(url_name, args=[job.pk]) in page
        assert drawn is (action in F94[level]), action
    listing = client.get(reverse("finetune:job_list")).content.decode()
    assert (reverse("finetune:job_stop", args=[job.pk]) in listing) is ("stop" in F94[level])


def test_an_outsider_never_sees_the_job_in_the_list(client, project, alice, charlie):
    factories.job(project, alice, name="secret-run", level=Access.READ_WRITE)
    client.force_login(charlie)
    assert "secret-run" not in client.get(reverse("finetune:job_list")).content.decode()


def test_a_member_without_access_does_not_find_the_job_in_the_list(client, project, alice, bob):
    factories.job(project, alice, name="private-run", level=Access.NONE)
    factories.job(project, alice, name="shared-run", level=Access.READ_ONLY)
    client.force_login(bob)
    page = client.get(reverse("finetune:job_list")).content.decode()
    assert "shared-run" in page and "private-run" not in page


def test_with_sharing_off_others_lose_access_and_the_form_offers_only_none(
    client, project, alice, bob
):
    job = factories.job(project, alice, level=Access.READ_WRITE)
    access.turn_sharing_off(project)
    client.force_login(bob)
    assert client.get(reverse("finetune:job_detail", args=[job.pk])).status_code == 404
    client.force_login(alice)
    form = client.get(reverse("finetune:job_create")).content.decode()
    assert 'value="none"' in form and 'value="rw"' not in form
    assert "An administrator turned sharing off for this project." in form


def test_bulk_delete_skips_jobs_the_member_may_not_delete(client, project, alice, bob):
    mine = factories.job(project, bob, name="bobs")
    readable = factories.job(project, alice, name="alices", level=Access.READ_ONLY)
    client.force_login(bob)
    response = client.post(
        reverse("finetune:job_bulk_delete"), {"pk": [mine.pk, readable.pk], "confirm": "1"}
    )
    assert response.status_code == 302
    assert list(Job.objects.values_list("name", flat=True)) == ["alices"]
