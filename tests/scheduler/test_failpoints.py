"""Failpoints fire only when enabled and armed, once per arming (config/failpoints.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from config.failpoints import failpoint


def _arm(settings, name: str, action: str):
    folder = settings.DATA_ROOT / "failpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(action)
    return folder / name


def test_an_armed_point_fires_once_and_only_when_failpoints_are_on(settings):
    settings.JINGTIAO_FAILPOINTS = False
    armed = _arm(settings, "launch.after_spawn", "sleep 0.3")
    started = time.monotonic()
    failpoint("launch.after_spawn")
    assert time.monotonic() - started < 0.2 and armed.exists()  # off: untouched

    settings.JINGTIAO_FAILPOINTS = True
    failpoint("launch.before_spawn")  # another point: not armed
    started = time.monotonic()
    failpoint("launch.after_spawn")
    assert time.monotonic() - started >= 0.3
    assert not armed.exists()
    started = time.monotonic()
    failpoint("launch.after_spawn")  # fired already
    assert time.monotonic() - started < 0.2


def test_kill_takes_the_whole_process_group(settings, tmp_path):
    _arm(settings, "launch.before_spawn", "kill")
    code = (
        "import django, os, subprocess, sys, time; django.setup();"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(child.pid, flush=True);"
        "from config.failpoints import failpoint; failpoint('launch.before_spawn');"
        "print('survived', flush=True)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "JINGTIAO_FAILPOINTS": "true",
        "JINGTIAO_DATA_ROOT": str(settings.DATA_ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # as a Celery worker started on its own
    )
    out, _ = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert "survived" not in out
    child = int(out.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the group's other process lives on")
