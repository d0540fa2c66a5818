"""A throw-away PostgreSQL database for the benchmarks that need one.

BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the
server; each benchmark creates its own database there and drops it at the end.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse, urlunparse

import psycopg


def server_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def admin(sql: str) -> None:
    with psycopg.connect(server_url(), autocommit=True) as connection:
        connection.execute(sql)


def setup_django(database: str) -> None:
    """Point Django at `database` on the benchmark server and start it."""
    parts = urlparse(server_url())
    os.environ["DATABASE_URL"] = urlunparse(parts._replace(path=f"/{database}"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("JINGTIAO_DATA_ROOT", f"/tmp/{database}")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.conf import settings

    # Pages are rendered from the source tree: no collectstatic manifest needed.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def peak_growth_mib(process, action):
    """(how far ``process``'s RSS rose above where it started, in MiB, while ``action()``
    ran, sampled every 20 ms; what ``action`` returned)."""
    import threading
    import time

    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        found = action()
    finally:
        done.set()
        sampler.join()
    return (peak[0] - before) / 2**20, found


def wait_for_server(port: int, tries: int = 300) -> None:
    """Until the server on ``port`` answers its liveness probe (0.1 s between tries)."""
    import http.client
    import time

    for _ in range(tries):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/livez")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
