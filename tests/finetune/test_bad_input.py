"""Inputs that gave a 500 before (issue 11, items 8 and 9): each is a clear refusal now."""

from __future__ import annotations

import pytest
from django.urls import reverse

from finetune.models import Job
from scheduler.models import ResourcePool
from tests import factories
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(ready):
    return support.job_post(*ready)


@pytest.mark.parametrize("hours", ["inf", "-inf", "nan", "1e308", "1e309", "0", "-3", "9" * 400])
def test_a_custom_duration_out_of_range_is_a_form_error(client, alice, draft, hours):
    client.force_login(alice)
    post = {**draft, "duration_preset": "custom", "duration_custom_hours": hours}
    response = client.post(reverse("finetune:job_create"), post)
    assert response.status_code == 400
    assert "duration_custom_hours" in response.context["form"].errors
    assert not Job.objects.exists()


@pytest.mark.parametrize("hours", ["inf", "nan", "1e308", "-1", "abc"])
def test_the_prediction_of_a_duration_out_of_range_still_answers(client, alice, draft, hours):
    client.force_login(alice)
    post = {**draft, "duration_preset": "custom", "duration_custom_hours": hours}
    response = client.post(reverse("finetune:job_prediction"), post)
    assert response.status_code == 200
    assert response.context["outlook"].verdict in ("now", "queue", "incomplete")


def test_a_custom_duration_of_three_and_a_half_hours_is_taken(client, alice, draft):
    client.force_login(alice)
    post = {**draft, "duration_preset": "custom", "duration_custom_hours": "3.5"}
    assert client.post(reverse("finetune:job_create"), post).status_code == 302
    assert Job.objects.get().duration.total_seconds() == 3.5 * 3600


@pytest.mark.parametrize("shown", ["abc", "-1", "9" * 5000, "\u0663", ""])
def test_a_refresh_with_a_bad_shown_algorithm_re_renders(client, alice, draft, shown):
    client.force_login(alice)
    post = {**draft, "_refresh": "1", "_shown_algorithm": shown}
    response = client.post(reverse("finetune:job_create"), post)
    assert response.status_code == 200
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node_count", "10" + "0" * 20),
        ("node_count", "0"),
        ("node_specs", "9" * 30),
        ("pool", "9" * 30),
        ("priority", "99999"),
        ("node_names", "\x00"),
    ],
)
def test_the_prediction_refuses_nothing_with_a_500(client, alice, draft, field, value):
    client.force_login(alice)
    response = client.post(reverse("finetune:job_prediction"), {**draft, field: value})
    assert response.status_code == 200


def test_the_prediction_does_not_name_another_projects_pool(client, alice, other_project, draft):
    theirs = ResourcePool.objects.create(name="research-secret-pool", dedicated=True)
    theirs.projects.add(other_project)
    client.force_login(alice)
    response = client.post(reverse("finetune:job_prediction"), {**draft, "pool": str(theirs.pk)})
    assert response.status_code == 200
    assert "research-secret-pool" not in response.content.decode()
    created = client.post(reverse("finetune:job_create"), {**draft, "pool": str(theirs.pk)})
    assert created.status_code == 400 and "pool" in created.context["form"].errors


def test_a_next_that_is_not_a_path_sends_back_to_the_job(client, project, alice):
    job = factories.job(project, alice)
    client.force_login(alice)
    post = {"priority": "30", "next": "inf"}
    response = client.post(reverse("finetune:job_priority", args=[job.pk]), post)
    assert response.status_code == 302
    assert response["Location"] == reverse("finetune:job_detail", args=[job.pk])
    switch = client.post(reverse("accounts:switch_project"), {"project": "x", "next": "nope"})
    assert switch.status_code == 302


def test_bulk_delete_ignores_ids_that_are_not_ids(client, project, alice):
    job = factories.job(project, alice)
    client.force_login(alice)
    post = {"pk": ["9" * 5000, "\u0663", "1_0", str(job.pk)]}
    response = client.post(reverse("finetune:job_bulk_delete"), post)
    assert response.status_code == 200
    assert [j.pk for j in response.context["jobs"]] == [job.pk]


@pytest.mark.parametrize("names", [",".join(f"n{i}" for i in range(129)), "n" * 254, "x," * 20000])
def test_too_many_or_too_long_node_names_are_a_form_error(client, alice, draft, names):
    client.force_login(alice)
    response = client.post(reverse("finetune:job_create"), {**draft, "node_names": names})
    assert response.status_code == 400
    assert "node_names" in response.context["form"].errors
