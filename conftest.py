"""The cast (STYLE.md): alice creates, bob is in her project, charlie is not,
admin operates. Project `demo` holds alice (member), bob (member) and
dora (project administrator); charlie belongs to `research` only."""

from __future__ import annotations

import os

import pytest

# Playwright's sync API runs an event loop in the test thread; the Django ORM
# calls the tests make around it are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_configure(config):
    if config.pluginmanager.hasplugin("django"):
        from django.conf import settings

        # Password hashing is deliberately slow; tests create many users.
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        # Serve static files from the source tree: no collectstatic before tests.
        settings.STORAGES = {
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        settings.WHITENOISE_USE_FINDERS = True
        settings.WHITENOISE_AUTOREFRESH = True


def pytest_collection_modifyitems(config, items):
    """Every transactional test restores the serialized database (serialized rollback):
    one without it leaves the content types and permissions re-created after its flush,
    and the next one with it fails to restore them (a unique key), in whatever order
    they run. Refused at collection rather than found by an unlucky order."""
    unserialized = [item.nodeid for item in items if _transactional_unserialized(item)]
    if unserialized:
        raise pytest.UsageError(
            "transactional tests without serialized_rollback=True: " + ", ".join(unserialized)
        )


def _transactional_unserialized(item) -> bool:
    marker = item.get_closest_marker("django_db")
    transaction = marker is not None and marker.kwargs.get("transaction", False)
    serialized = marker is not None and marker.kwargs.get("serialized_rollback", False)
    fixtures = getattr(item, "fixturenames", ())
    if "django_db_serialized_rollback" in fixtures:
        serialized = True
    transactional = transaction or "transactional_db" in fixtures or "live_server" in fixtures
    return transactional and not serialized


@pytest.fixture(autouse=True)
def _isolated_data_root(request, tmp_path):
    """Each test gets its own data root, so job folders never leak between tests."""
    if not request.config.pluginmanager.hasplugin("django"):
        return  # the trainer's tests run without Django too
    settings = request.getfixturevalue("settings")
    settings.DATA_ROOT = tmp_path / "data"
    settings.DATA_ROOT.mkdir()


@pytest.fixture(autouse=True)
def _empty_cache(request):
    """Each test starts with an empty cache: a queue plan or a rate count left by another
    test (or an earlier run: the cache is a real Redis) must not change what it sees."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def project(db):
    from accounts.models import Project

    return Project.objects.create(name="demo")


@pytest.fixture
def other_project(db):
    from accounts.models import Project

    return Project.objects.create(name="research")


def _user(username: str, **extra):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password=f"{username}-password", **extra)


@pytest.fixture
def alice(project):
    from accounts.models import Membership

    user = _user("alice")
    Membership.objects.create(project=project, user=user)
    return user


@pytest.fixture
def bob(project):
    from accounts.models import Membership

    user = _user("bob")
    Membership.objects.create(project=project, user=user)
    return user


@pytest.fixture
def dora(project):
    """An administrator of the demo project (not a site operator)."""
    from accounts.models import Membership

    user = _user("dora")
    Membership.objects.create(project=project, user=user, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def charlie(other_project):
    from accounts.models import Membership

    user = _user("charlie")
    Membership.objects.create(project=other_project, user=user)
    return user


@pytest.fixture
def admin(db):
    """The site operator."""
    return _user("admin", is_staff=True, is_superuser=True)


@pytest.fixture(autouse=True)
def _language_reset(request):
    """A request in Chinese leaves its language active in the test's thread (Django's
    locale middleware activates it and nothing deactivates it): each test starts, and
    leaves, in the default language, whatever order the tests run in."""
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()
