"""Personal API tokens: made on the user's page (shown once, kept hashed), limited to
their projects, revoked, expired; and by the operators' command."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import tokens
from accounts.models import ApiToken

pytestmark = pytest.mark.django_db
PROJECTS = "/api/v1/projects/"


def _bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_the_page_shows_a_new_token_once_and_keeps_only_its_hash(client, project, alice):
    client.force_login(alice)
    url = reverse("accounts:api_tokens")
    response = client.post(url, {"name": "ci", "projects": [project.pk], "lifetime": "30"})
    assert response.status_code == 201
    key = response.context["new_key"]
    assert key.startswith("jt_") and key in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=alice)
    assert token.key_hash == tokens.hash_key(key) and key not in token.key_hash
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    again = client.get(url).content.decode()
    assert key not in again and token.prefix in again
    assert _bearer(key).get(PROJECTS).json()[0]["name"] == "demo"


def test_it_refuses_a_token_for_a_project_the_user_is_not_in(client, project, other_project, alice):
    client.force_login(alice)
    response = client.post(
        reverse("accounts:api_tokens"), {"name": "x", "projects": [other_project.pk]}
    )
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_a_token_acts_only_in_its_projects(project, other_project, alice):
    from accounts.models import Membership
    from tests import factories

    Membership.objects.create(project=other_project, user=alice)
    mine = factories.job(project, alice, name="in-demo")
    elsewhere = factories.job(other_project, alice, name="in-research")
    _token, key = tokens.issue(alice, name="demo only", projects=[project])
    client = _bearer(key)
    names = [job["name"] for job in client.get("/api/v1/jobs/").json()["results"]]
    assert names == ["in-demo"]
    assert client.get(f"/api/v1/jobs/{elsewhere.pk}/").status_code == 404
    assert client.get(f"/api/v1/jobs/{mine.pk}/").status_code == 200
    assert client.post(f"/api/v1/jobs/{elsewhere.pk}/stop/").status_code == 404


def test_a_revoked_token_no_longer_works(client, project, alice):
    token, key = tokens.issue(alice, name="old", projects=[project])
    assert _bearer(key).get(PROJECTS).status_code == 200
    client.force_login(alice)
    client.post(reverse("accounts:revoke_api_token", args=[token.pk]))
    response = _bearer(key).get(PROJECTS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_one_may_not_revoke_another_users_token(client, project, alice, bob):
    token, key = tokens.issue(alice, name="mine", projects=[project])
    client.force_login(bob)
    client.post(reverse("accounts:revoke_api_token", args=[token.pk]))
    assert _bearer(key).get(PROJECTS).status_code == 200


def test_an_expired_token_and_one_of_a_deactivated_user_are_refused(project, alice, bob):
    token, key = tokens.issue(alice, name="soon", projects=[project])
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _bearer(key).get(PROJECTS).status_code == 401
    _token, bobs = tokens.issue(bob, name="bob", projects=[project])
    bob.is_active = False
    bob.save()
    assert _bearer(bobs).get(PROJECTS).status_code == 401


def test_a_missing_or_malformed_token_is_a_401(project, alice):
    assert APIClient().get(PROJECTS).status_code == 401
    assert _bearer("jt_not-a-token").get(PROJECTS).status_code == 401
    assert _bearer("something").get(PROJECTS).status_code == 401


def test_its_last_use_is_noted_at_most_once_a_minute(project, alice):
    token, key = tokens.issue(alice, name="t", projects=[project])
    client = _bearer(key)
    client.get(PROJECTS)
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    client.get(PROJECTS)
    token.refresh_from_db()
    assert token.last_used_at == first


def test_the_command_prints_a_working_token(project, alice):
    out = StringIO()
    call_command("create_api_token", "alice", "--project", "demo", "--name", "ci", stdout=out)
    key = out.getvalue().strip()
    assert _bearer(key).get(PROJECTS).json()[0]["id"] == project.pk
    assert ApiToken.objects.get(user=alice).name == "ci"


def test_the_command_names_what_is_wrong(project, other_project, alice):
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_token", "nobody", "--project", "demo")
    with pytest.raises(CommandError, match="No project"):
        call_command("create_api_token", "alice", "--project", "nowhere")
    with pytest.raises(CommandError, match="belong to"):
        call_command("create_api_token", "alice", "--project", "research")


def test_requests_past_the_rate_are_refused_with_429(settings, project, alice):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "token": "3/minute"}
    SimpleRateThrottle.THROTTLE_RATES = rates
    try:
        _token, key = tokens.issue(alice, name="busy", projects=[project])
        client = _bearer(key)
        codes = [client.get(PROJECTS).status_code for _ in range(4)]
        other = tokens.issue(alice, name="other", projects=[project])[1]
        assert codes == [200, 200, 200, 429]
        assert _bearer(other).get(PROJECTS).status_code == 200  # per token
    finally:
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
