"""The deployment files agree with the code: compose services and their commands."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_web_workers_beat_postgres_and_redis(compose):
    platform = {"web", "worker", "data-worker", "inference-worker", "export-worker", "beat"}
    platform |= {"webhook-worker"}
    assert set(compose["services"]) == platform | {"postgres", "redis"}


def test_platform_services_share_one_configuration(compose):
    from urllib.parse import urlparse

    services = compose["services"]
    platform = ("web", "worker", "data-worker", "inference-worker", "export-worker", "beat")
    platform += ("webhook-worker",)
    first = services["web"]
    for name in platform:
        # one configuration: the same settings, data volume and start order everywhere
        for key in ("environment", "volumes", "depends_on", "image"):
            assert services[name].get(key) == first.get(key), (name, key)
    env = first["environment"]
    database, redis = urlparse(env["DATABASE_URL"]), urlparse(env["REDIS_URL"])
    assert database.scheme.startswith("postgres") and database.hostname in services
    assert redis.scheme == "redis" and redis.hostname in services
    assert first["depends_on"][database.hostname]["condition"] == "service_healthy"
    data_volume = first["volumes"][0].split(":")
    assert data_volume[0] in compose["volumes"] and data_volume[1] == "/data"
    assert services["worker"]["command"].startswith("celery -A config worker")
    # the queue every task of the platform is sent to, and the data sets' own
    assert "--queues jingtiao " in services["worker"]["command"]
    assert "--queues data " in services["data-worker"]["command"]
    assert "--queues inference " in services["inference-worker"]["command"]
    assert "--queues export " in services["export-worker"]["command"]
    assert "--queues webhooks " in services["webhook-worker"]["command"]
    assert services["beat"]["command"].startswith("celery -A config beat")
    assert "migrate" in services["web"]["command"]


def test_compose_config_accepts_the_file():
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is needed to check the file (bin/test installs it)"
    result = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _queues(command: list[str] | str) -> set[str]:
    words = command.split() if isinstance(command, str) else command
    return set(words[words.index("--queues") + 1].split(",")) if "--queues" in words else set()


def test_every_queue_a_task_is_sent_to_has_a_worker_in_each_layout(compose, settings):
    from config.celery import app
    from config.embedded import children

    app.loader.import_default_modules()
    routes = settings.CELERY_TASK_ROUTES
    sent_to = {
        routes.get(name, {}).get("queue", settings.CELERY_TASK_DEFAULT_QUEUE)
        for name in app.tasks
        if not name.startswith("celery.")
    }
    assert {"jingtiao", "data"} <= sent_to
    composed = set().union(*(_queues(s.get("command", "")) for s in compose["services"].values()))
    embedded = set().union(*(_queues(child.command) for child in children("127.0.0.1", 0, 1, 1)))
    manifests = set()
    for path in (ROOT / "deploy" / "kubernetes").glob("*worker.yaml"):
        for container in yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["containers"]:
            manifests |= _queues(container["command"])
    assert sent_to <= composed and sent_to <= embedded and sent_to <= manifests
