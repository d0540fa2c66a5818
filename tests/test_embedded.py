"""The embedded run: its own broker, a worker and a web server, each started again if
it dies, all stopped by SIGTERM (config/embedded.py). Run as bin/demo runs it, on
SQLite and its own Redis, with none of the test services."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def _until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"not within {seconds} s: {what}")


@pytest.fixture
def embedded(tmp_path):
    data_root = Path(f"/tmp/jt-{os.getpid()}-{tmp_path.name[-12:]}")  # short: a socket path
    data_root.mkdir()
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    environ.update(JINGTIAO_DATA_ROOT=str(data_root), DJANGO_SETTINGS_MODULE="config.settings")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=environ, check=True, cwd=ROOT, timeout=120)
    port = _free_port()
    process = subprocess.Popen(
        [*manage, "run_embedded", "--port", str(port), "--web-workers", "1"],
        env=environ,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield process, f"http://127.0.0.1:{port}", data_root
    if process.poll() is None:
        process.kill()
    process.wait(30)
    subprocess.run(["rm", "-rf", str(data_root)], check=False)


def _pids(data_root: Path) -> dict:
    try:
        return json.loads((data_root / "logs" / "embedded.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_the_embedded_run_starts_again_a_worker_that_dies_and_stops_whole(embedded):
    process, url, data_root = embedded
    _until(lambda: _get(f"{url}/livez")[0] == 200, 60, "the web server answers")
    # beat's first heartbeat, sent as it starts, went through the embedded broker
    _until(lambda: _get(f"{url}/healthz")[0] == 200, 60, "the platform is ready")
    first = _pids(data_root)
    assert set(first) == {"broker", "worker", "data-worker", "inference-worker", "beat", "web"}

    os.kill(first["worker"]["pid"], signal.SIGKILL)
    restarted = _until(
        lambda: (pids := _pids(data_root))["worker"]["restarts"] == 1 and pids, 30, "a restart"
    )
    assert restarted["worker"]["pid"] != first["worker"]["pid"]
    for name in ("web", "beat", "broker", "data-worker", "inference-worker"):
        assert restarted[name] == first[name], name
    assert _get(f"{url}/livez")[0] == 200  # the web server never went down

    process.send_signal(signal.SIGTERM)
    process.wait(60)
    for name, child in restarted.items():
        assert not psutil.pid_exists(child["pid"]) or (
            psutil.Process(child["pid"]).status() == psutil.STATUS_ZOMBIE
        ), name
    # the old worker's pool and beat went with it
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(data_root) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
