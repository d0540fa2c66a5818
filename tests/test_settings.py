import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import Env, embedded_secret_key


def test_it_reads_typed_values():
    env = Env({"ON": "yes", "OFF": "0", "N": "42", "L": "a, b,,c"})
    assert env.bool("ON", False) is True
    assert env.bool("OFF", True) is False
    assert env.int("N", 1) == 42
    assert env.list("L", []) == ["a", "b", "c"]
    assert env.str("MISSING", "fallback") == "fallback"


@pytest.mark.parametrize(
    ("environ", "read", "message"),
    [
        ({"DEBUG": "maybe"}, lambda e: e.bool("DEBUG", False), "DEBUG must be true or false"),
        ({"PORT": "80x"}, lambda e: e.int("PORT", 1), "PORT must be an integer"),
        ({"N": "0"}, lambda e: e.int("N", 1, minimum=1), "N must be at least 1"),
        (
            {"JINGTIAO_EXECUTOR": "slurm"},
            lambda e: e.choice("JINGTIAO_EXECUTOR", "local", ("local", "kubernetes")),
            "must be one of local, kubernetes",
        ),
        ({"ROOT": " "}, lambda e: e.path("ROOT", None), "ROOT must not be empty"),
    ],
)
def test_it_refuses_bad_values_naming_the_variable(environ, read, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        read(Env(environ))


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    assert Env({"SECRET_KEY_FILE": str(secret)}).str("SECRET_KEY", "") == "s3cr3t"


def test_it_refuses_a_secret_set_twice(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("a")
    with pytest.raises(ImproperlyConfigured, match="either SECRET_KEY or SECRET_KEY_FILE"):
        Env({"SECRET_KEY": "b", "SECRET_KEY_FILE": str(secret)}).str("SECRET_KEY", "")


def test_it_refuses_an_unreadable_secret_file(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="cannot read"):
        Env({"SECRET_KEY_FILE": str(tmp_path / "absent")}).str("SECRET_KEY", "")


def test_the_embedded_secret_key_is_random_and_kept(tmp_path):
    first = embedded_secret_key(tmp_path / "a")
    assert embedded_secret_key(tmp_path / "a") == first
    assert embedded_secret_key(tmp_path / "b") != first
    assert len(first) >= 50
    assert oct((tmp_path / "a" / "secret_key").stat().st_mode & 0o777) == "0o600"


def _run_settings(tmp_path, **variables) -> str:
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    environ.update(JINGTIAO_DATA_ROOT=str(tmp_path), **variables)
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.JINGTIAO_EXECUTOR)"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        env={**environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


def test_the_embedded_defaults_need_no_server(tmp_path):
    output = _run_settings(tmp_path)
    socket = tmp_path.resolve() / "broker" / "redis.sock"
    assert f"django.db.backends.sqlite3 redis+socket://{socket} local" in output


def test_production_uses_postgresql_and_redis(tmp_path):
    output = _run_settings(
        tmp_path,
        DATABASE_URL="postgres://u@db:5432/jingtiao",
        REDIS_URL="redis://redis:6379/0",
    )
    assert "django.db.backends.postgresql redis://redis:6379/0 local" in output


def test_a_bad_executor_stops_start_up(tmp_path):
    output = _run_settings(tmp_path, JINGTIAO_EXECUTOR="slurm")
    assert "ImproperlyConfigured" in output
    assert "JINGTIAO_EXECUTOR must be one of local, kubernetes" in output


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"JINGTIAO_ADMISSION": "kueue"}, "JINGTIAO_ADMISSION=kueue needs JINGTIAO_EXECUTOR"),
        ({"JINGTIAO_ADMISSION": "volcano"}, "JINGTIAO_ADMISSION must be one of jingtiao, kueue"),
        (
            {"JINGTIAO_EXECUTOR": "kubernetes", "JINGTIAO_KUEUE_DEFAULT_QUEUE": "Team A"},
            "JINGTIAO_KUEUE_DEFAULT_QUEUE must be a Kubernetes name",
        ),
    ],
)
def test_a_bad_admission_mode_stops_start_up(tmp_path, variables, message):
    output = _run_settings(tmp_path, **variables)
    assert "ImproperlyConfigured" in output and message in output


def test_kueue_admission_goes_with_the_kubernetes_executor(tmp_path):
    output = _run_settings(tmp_path, JINGTIAO_EXECUTOR="kubernetes", JINGTIAO_ADMISSION="kueue")
    assert output.strip().endswith("kubernetes")


@pytest.mark.parametrize(
    "value", ["/mnt/corpora", "../outside", "datasets/1", "jobs", "secret_key", "repos/x", "."]
)
def test_a_shared_data_folder_may_not_be_the_platforms_or_a_projects(value):
    from config.env import shared_data_dirs

    with pytest.raises(ImproperlyConfigured, match="JINGTIAO_SHARED_DATA_DIRS"):
        shared_data_dirs([value])


def test_shared_data_folders_are_kept_as_relative_paths():
    from config.env import shared_data_dirs

    assert shared_data_dirs(["shared/corpora/", "public"]) == ["shared/corpora", "public"]
