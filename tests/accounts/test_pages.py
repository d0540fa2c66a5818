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


def _login(client, password: str, **extra):
    data = {"username": "alice", "password": password}
    return client.post(reverse("accounts:login"), data, **extra)


def test_logins_are_throttled_after_repeated_wrong_passwords(client, alice, settings):
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "nope").status_code == 200
    locked = _login(client, "nope")
    assert locked.status_code == 429
    assert "Too many failed logins for this user from your address." in locked.content.decode()
    assert "Try again in 15 minutes." in locked.content.decode()
    # Even the right password waits out the cool-off.
    assert _login(client, "alice-password").status_code == 429


def test_the_lockout_is_said_in_chinese(client, alice, settings):
    client.cookies["django_language"] = "zh-hans"
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        response = _login(client, "nope")
    assert response.status_code == 429
    assert "登录失败次数过多" in response.content.decode()


def test_the_lockout_is_per_user_and_address(client, alice, bob, settings):
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "nope")
    assert _login(client, "alice-password", REMOTE_ADDR="10.0.0.9").status_code == 302
    data = {"username": "bob", "password": "bob-password"}
    assert client.post(reverse("accounts:login"), data).status_code == 302


def test_a_forged_forwarded_address_does_not_escape_the_lockout(client, alice, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "nope", HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}")
    assert _login(client, "alice-password", HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429


def test_behind_a_proxy_the_forwarded_address_counts(client, alice, settings):
    settings.JINGTIAO_PROXY_COUNT = 1
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "nope", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert _login(client, "alice-password", HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
    other = _login(client, "alice-password", HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert other.status_code == 302


def test_a_right_password_resets_the_count(client, alice, settings):
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "nope")
    assert _login(client, "alice-password").status_code == 302
    client.logout()
    assert _login(client, "nope").status_code == 200


def test_every_page_carries_a_content_security_policy(client, alice):
    client.force_login(alice)
    for url in (reverse("accounts:login"), reverse("finetune:job_list"), "/admin/login/"):
        policy = client.get(url)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy


@pytest.mark.parametrize("username", ["9" * 5000, "名" * 300, "a\x00b"])
def test_a_login_with_an_absurd_name_is_refused_not_failed(client, username):
    response = client.post(reverse("accounts:login"), {"username": username, "password": "x"})
    assert response.status_code in (200, 429)
