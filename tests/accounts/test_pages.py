"""Login, the console layout, project and language switches, and the health probe."""

import pytest
from django.urls import reverse

from accounts.models import Access, Membership
from tests import factories

pytestmark = pytest.mark.django_db


def test_pages_need_a_login(client):
    response = client.get(reverse("finetune:job_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_a_member_logs_in_and_sees_the_menu_of_the_manual(client, alice):
    response = client.post(
        reverse("accounts:login"),
        {"username": "alice", "password": "alice-password"},
        follow=True,
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Training management" in page and "LLM fine-tuning" in page
    assert 'data-testid="current-user">alice<' in page
    assert f'<option value="{alice.projects.get().pk}" selected>demo</option>' in page


def test_a_wrong_password_is_refused_with_a_message(client, alice):
    response = client.post(reverse("accounts:login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_logout_ends_the_session(client, alice):
    client.force_login(alice)
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert client.get(reverse("finetune:job_list")).status_code == 302


def test_the_console_speaks_chinese_when_asked(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("set_language"),
        {"language": "zh-hans", "next": reverse("finetune:job_list")},
        follow=True,
    )
    page = response.content.decode()
    assert "训练管理" in page and "大模型精调" in page
    assert '<html lang="zh-hans">' in page


def test_switching_project_changes_what_the_list_shows(client, alice, other_project, charlie):
    Membership.objects.create(project=other_project, user=alice)
    demo = alice.projects.get(name="demo")
    factories.job(demo, alice, name="in-demo")
    factories.job(other_project, charlie, name="in-research", level=Access.READ_ONLY)
    client.force_login(alice)
    first = client.get(reverse("finetune:job_list")).content.decode()
    assert "in-demo" in first and "in-research" not in first
    client.post(reverse("accounts:switch_project"), {"project": other_project.pk, "next": "/jobs/"})
    second = client.get(reverse("finetune:job_list")).content.decode()
    assert "in-research" in second and "in-demo" not in second


def test_switching_to_a_project_of_others_is_refused(client, alice, other_project):
    client.force_login(alice)
    response = client.post(
        reverse("accounts:switch_project"), {"project": other_project.pk}, follow=True
    )
    assert "You are not a member of that project." in response.content.decode()


def test_switch_project_never_redirects_off_site(client, alice):
    client.force_login(alice)
    demo = alice.projects.get()
    response = client.post(
        reverse("accounts:switch_project"), {"project": demo.pk, "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("home")


def test_the_job_list_shows_only_jobs_the_member_may_see(client, project, alice, bob, charlie):
    factories.job(project, alice, name="shared-job", level=Access.READ_ONLY)
    factories.job(project, alice, name="private-job", level=Access.NONE)
    client.force_login(bob)
    page = client.get(reverse("finetune:job_list")).content.decode()
    assert "shared-job" in page and "private-job" not in page
    client.force_login(charlie)
    page = client.get(reverse("finetune:job_list")).content.decode()
    assert "shared-job" not in page and "No fine-tuning jobs yet." in page


def test_a_user_without_a_project_is_told_so(client, db):
    from django.contrib.auth import get_user_model

    loner = get_user_model().objects.create_user("loner", password="x")
    client.force_login(loner)
    page = client.get(reverse("finetune:job_list")).content.decode()
    assert "You are not a member of any project yet" in page


def test_the_health_probe_reaches_the_database_the_cache_and_the_broker(client, settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "tests run against Redis"
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok"},
    }


def test_the_health_probe_reports_a_broker_that_is_down(client, monkeypatch):
    from config import health

    def broken():
        raise ConnectionError("connection refused")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "error: connection refused"
