"""The playground and the download of a version, through the real server and worker
(issue 15): gunicorn serves the pages, a Celery worker of the ``inference`` queue answers,
PostgreSQL and Redis between them, a tiny LoRA version on the CPU.

    .venv/bin/python benchmarks/playground.py

Prints, each on its own line:

    cold_load_ms             the first question to a version: from the POST to the first
                             words on the page's poll, the model loaded on the way
    first_token_ms_p50/p95   the same for the next questions, the model already loaded
                             (goal: p95 at most 300 ms); the poll asks every 10 ms
    tokens_per_s             words generated per second once they flow (the version's side)
    download_rss_growth_mib  how much the web server's worker grew while a version of
                             500 MB was downloaded through it as one zip (goal: 50 MiB)
    download_mib_per_s

BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the
server to create the database on (jingtiao_bench_playground, dropped at the end);
BENCH_REDIS_URL (default redis://127.0.0.1:6379/11) the broker and cache.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchdb  # noqa: E402

BENCH_DB = "jingtiao_bench_playground"
CSRF = "c" * 32
QUESTIONS = 20
DOWNLOAD_MB = int(os.environ.get("BENCH_DOWNLOAD_MB", "500"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Site:
    """Requests to the server as one logged-in member."""

    def __init__(self, port: int, session: str) -> None:
        self.port = port
        self.cookie = f"sessionid={session}; csrftoken={CSRF}"

    def request(self, method: str, path: str, body: bytes | None = None, **headers):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        connection.request(method, path, body=body, headers={"Cookie": self.cookie, **headers})
        return connection, connection.getresponse()

    def json(self, method: str, path: str, fields: dict | None = None) -> tuple[int, dict]:
        body = urlencode({"csrfmiddlewaretoken": CSRF, **(fields or {})}).encode()
        kind = {"Content-Type": "application/x-www-form-urlencoded"} if fields else {}
        connection, response = self.request(method, path, body if fields else None, **kind)
        data = json.loads(response.read() or b"{}")
        connection.close()
        return response.status, data


def _ask(site: Site, ask_url: str, prompt: str) -> tuple[float, float, str]:
    """(ms to the first words, seconds from them to the end, the answer) of one question."""
    fields = {"prompt": prompt, "history": "[]", "max_new_tokens": 48, "temperature": 0,
              "top_p": 0.9, "seed": 0}  # fmt: skip
    started = time.perf_counter()
    status, answer = site.json("POST", ask_url, fields)
    assert status == 202, answer
    first = None
    while True:
        status, state = site.json("GET", answer["state"])
        assert status == 200 and state["status"] != "failed", state
        text = state["sides"]["version"]
        if text and first is None:
            first = time.perf_counter()
        if state["status"] == "done":
            return (first - started) * 1000, time.perf_counter() - first, text
        time.sleep(0.01)


def _serve(env: dict, port: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "4", "--timeout", "600"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "inference",
         "--concurrency", "1", "--loglevel", "WARNING", "--hostname", "bench-inference@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    benchdb.wait_for_server(port)
    return web, worker


def _download(site: Site, url: str, web: subprocess.Popen) -> tuple[float, float]:
    """(RSS growth in MiB of the web worker, MiB/s) while the archive is read and dropped."""
    import psutil

    worker = psutil.Process(web.pid).children()[0]
    connection, response = site.request("GET", url)  # warm: what a download loads
    response.read(1 << 20)
    connection.close()

    def read_it_all() -> tuple[int, float]:
        started = time.perf_counter()
        connection, response = site.request("GET", url)
        assert response.status == 200, response.status
        total = 0
        while block := response.read(1 << 20):
            total += len(block)
        connection.close()
        return total, time.perf_counter() - started

    growth, (total, seconds) = benchdb.peak_growth_mib(worker, read_it_all)
    return growth, total / 2**20 / seconds


def main() -> None:
    data_root = Path(tempfile.mkdtemp(prefix="jingtiao-bench-playground-"))
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    parts = urlparse(benchdb.server_url())
    env = {
        **os.environ,
        "DATABASE_URL": urlunparse(parts._replace(path=f"/{BENCH_DB}")),
        "REDIS_URL": redis,
        "JINGTIAO_DATA_ROOT": str(data_root),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DEBUG": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    os.environ.update(env)
    benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    benchdb.admin(f"CREATE DATABASE {BENCH_DB}")
    web = worker = None
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client
        from django.urls import reverse

        from accounts.models import Access, Membership, Project
        from finetune.catalog_sync import sync_catalog
        from finetune.storage import resolve
        from tests import factories
        from tests.finetune.test_model_versions import _tiny_version

        call_command("migrate", verbosity=0)
        sync_catalog()
        alice = get_user_model().objects.create_user("alice", password="x")
        project = Project.objects.create(name="bench")
        Membership.objects.create(user=alice, project=project)
        repo = factories.model_repo(project, alice, Access.NONE, name="assistant")
        version = _tiny_version(repo, warm=True)
        client = Client()
        client.force_login(alice)
        site = Site(_free_port(), client.cookies["sessionid"].value)
        web, worker = _serve(env, site.port)
        ask_url = reverse("finetune:playground_ask", args=[repo.pk, version.number])

        cold, _, _ = _ask(site, ask_url, "Hello, who are you?")
        firsts, rates = [], []
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(resolve(version.location) / "adapter"))
        for number in range(QUESTIONS):
            first, flowing, text = _ask(site, ask_url, f"Question number {number}: tell me more.")
            firsts.append(first)
            tokens = len(tokenizer(text).input_ids)
            if flowing > 0 and tokens > 1:
                rates.append(tokens / flowing)
        quantiles = statistics.quantiles(firsts, n=20)
        print(f"cold_load_ms: {cold:.0f} ms")
        print(f"first_token_ms_p50: {statistics.median(firsts):.0f} ms")
        print(f"first_token_ms_p95: {quantiles[18]:.0f} ms")
        print(f"tokens_per_s: {statistics.median(rates):.0f} tokens/s")

        big = resolve(version.location) / "adapter" / "weights.bin"
        block = os.urandom(1 << 20)
        with big.open("wb") as handle:
            for _ in range(DOWNLOAD_MB):
                handle.write(block)
        download = reverse("finetune:modelversion_download", args=[repo.pk, version.number])
        growth, speed = _download(site, download, web)
        print(f"download_rss_growth_mib: {growth:.1f} MiB")
        print(f"download_mib_per_s: {speed:.0f} MiB/s")
    finally:
        for process in (web, worker):
            if process is not None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        from django.db import connections

        connections.close_all()
        benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        shutil.rmtree(data_root, ignore_errors=True)


if __name__ == "__main__":
    main()
