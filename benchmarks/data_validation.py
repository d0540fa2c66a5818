"""Data validated off the request path (issue 18): how fast a worker validates, what a
job creation costs once its data is validated, and what a large upload costs the web
server's memory.

Builds, in a temporary data root, a chat JSONL of about 2 GB (BENCH_DATA_GB) and a
text-to-image folder of 20,000 images, registers both as data sets in its own
PostgreSQL database (jingtiao_bench_data, dropped at the end), and prints:

    validate_rows_per_s        rows of the chat file read and checked per second by
                               the worker's validation (finetune/services/validation.py)
    validate_images_per_s      text-to-image rows (each image opened and verified)
    revalidate_touched_s       validating the chat file again after its time changed
                               but not its content (hashed, not parsed)
    create_job_ms_with_validated_data  median of the create form's POST (the whole
                               request) on either data set, the larger of the two
                               (goal 200 ms, whatever the data size)
    upload_rss_growth_mib      how much the web server's worker grew while the chat
                               file was uploaded through it (gunicorn, a real HTTP
                               POST streamed from disk; goal 64 MiB)
    upload_mib_per_s

    .venv/bin/python benchmarks/data_validation.py

BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the
server to create the database on.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchdb  # noqa: E402

BENCH_DB = "jingtiao_bench_data"
GIGABYTES = float(os.environ.get("BENCH_DATA_GB", "2"))
IMAGES = int(os.environ.get("BENCH_IMAGES", "20000"))
CREATES = 7
CSRF = "b" * 32


def _write_chat(path: Path, size: int) -> int:
    """A chat JSONL of about ``size`` bytes, rows of about 1 KB; returns its rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    words = ["the", "model", "answers", "questions", "about", "the", "data", "set"]
    words += ["it", "was", "trained", "on"]
    rows = written = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < size:
            lines = []
            for _ in range(1000):
                rows += 1
                question = " ".join(words[(rows + i) % len(words)] for i in range(40))
                answer = " ".join(words[(rows * 7 + i) % len(words)] for i in range(100))
                row = {
                    "messages": [
                        {"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": f"{rows}: {question}?"},
                        {"role": "assistant", "content": answer},
                    ]
                }
                lines.append(json.dumps(row))
            block = "\n".join(lines) + "\n"
            handle.write(block)
            written += len(block)
    return rows


def _write_images(folder: Path, count: int) -> None:
    from io import BytesIO

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    buffer = BytesIO()
    Image.new("RGB", (16, 16), (120, 80, 200)).save(buffer, "PNG")
    png = buffer.getvalue()
    with (folder / "metadata.jsonl").open("w") as metadata:
        for index in range(count):
            name = f"{index:06d}.png"
            (folder / name).write_bytes(png)
            metadata.write(json.dumps({"file_name": name, "text": f"a purple square {index}"}))
            metadata.write("\n")


def _validate(dataset_id: int) -> float:
    from finetune.models import Dataset
    from finetune.services import validation

    started = time.perf_counter()
    assert validation.validate_now(dataset_id)
    seconds = time.perf_counter() - started
    assert Dataset.objects.get(pk=dataset_id).validation_status == "valid"
    return seconds


def _create_ms(client, post: dict) -> float:
    from django.urls import reverse

    times = []
    for number in range(CREATES):
        started = time.perf_counter()
        response = client.post(reverse("finetune:job_create"), {**post, "name": f"run-{number}"})
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 302, response.content.decode()[:2000]
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _upload(port: int, session: str, scenario_id: int, file: Path) -> tuple[int, float]:
    """POST the create-data-set form with ``file``, streamed from disk."""
    boundary = "jingtiao-bench-boundary"
    fields = {"csrfmiddlewaretoken": CSRF, "name": "uploaded", "scenario": str(scenario_id)}
    fields["access"] = "none"
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="upload"; filename="chat.jsonl"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head.encode()) + file.stat().st_size + len(tail)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.putrequest("POST", "/datasets/new/")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(length))
    connection.putheader("Cookie", f"sessionid={session}; csrftoken={CSRF}")
    connection.endheaders()
    connection.send(head.encode())
    with file.open("rb") as handle:
        while block := handle.read(1 << 20):
            connection.send(block)
    connection.send(tail)
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def _upload_through_a_server(data_root: Path, session: str, scenario_id: int, file: Path):
    """(status, seconds, RSS growth in MiB) of the upload through gunicorn."""
    import psutil

    port = _free_port()
    env = {**os.environ, "DEBUG": "1", "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    env["JINGTIAO_DATA_ROOT"] = str(data_root)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "2", "--timeout", "600"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        benchdb.wait_for_server(port)
        worker = psutil.Process(server.pid).children()[0]
        # warm: the form's first POST loads what a request loads (a refused one: no name)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(
            "POST",
            "/datasets/new/",
            body=f"csrfmiddlewaretoken={CSRF}",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"sessionid={session}; csrftoken={CSRF}",
            },
        )
        connection.getresponse().read()
        growth, (status, seconds) = benchdb.peak_growth_mib(
            worker, lambda: _upload(port, session, scenario_id, file)
        )
        return status, seconds, growth
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    data_root = Path(tempfile.mkdtemp(prefix="jingtiao-bench-data-"))
    os.environ["JINGTIAO_DATA_ROOT"] = str(data_root)
    # A broker that answers, as in production (what the creations queue is left
    # unconsumed, then purged); BENCH_BROKER_URL to use another.
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    os.environ["CELERY_BROKER_URL"] = broker
    benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    benchdb.admin(f"CREATE DATABASE {BENCH_DB}")
    try:
        benchdb.setup_django(BENCH_DB)
        from django.core.management import call_command
        from django.test import Client

        from accounts.models import Access, Membership, Project
        from finetune import access
        from finetune.catalog_sync import sync_catalog
        from finetune.models import Dataset, ModelRepo, PretrainedModel, Scenario
        from scheduler.models import DeviceType, Node, NodeSpec
        from tests.finetune.pages_support import job_post  # the create form's whole POST

        call_command("migrate", verbosity=0)
        sync_catalog()
        from django.contrib.auth import get_user_model

        alice = get_user_model().objects.create_user("alice", password="x")
        project = Project.objects.create(name="bench")
        Membership.objects.create(user=alice, project=project)
        spec = NodeSpec.objects.create(
            name="cpu", cpu_millis=4000, memory_mib=8192, device_type=DeviceType.NONE
        )
        Node.objects.create(
            name="n1", cpu_millis=16000, memory_mib=65536, device_type=DeviceType.NONE
        )
        area = data_root / "datasets" / str(project.pk)
        chat = area / "chat" / "data.jsonl"
        rows = _write_chat(chat, int(GIGABYTES * 2**30))
        _write_images(area / "images", IMAGES)

        def register(name, scenario, location, kind):
            found = Dataset.objects.create(
                project=project,
                creator=alice,
                name=name,
                scenario=Scenario.objects.get(code=scenario),
                format=kind,
                location=location,
            )
            access.share_new(found, Access.NONE)
            return found

        chats = register("chat", "llm/sft", f"datasets/{project.pk}/chat", "sft_messages")
        images = register("images", "t2i/finetune", f"datasets/{project.pk}/images", "t2i")
        seconds = _validate(chats.pk)
        print(f"validate_rows_per_s: {rows / seconds:.0f} rows/s")
        print(f"validate_mib_per_s: {chat.stat().st_size / 2**20 / seconds:.1f} MiB/s")
        image_seconds = _validate(images.pk)
        print(f"validate_images_per_s: {IMAGES / image_seconds:.0f} images/s")
        os.utime(chat)
        print(f"revalidate_touched_s: {_validate(chats.pk):.2f} s")

        client = Client()
        client.force_login(alice)
        llm = PretrainedModel.objects.create(name="m", task_type="llm", location="models/m")
        t2i = PretrainedModel.objects.create(name="sd", task_type="t2i", location="models/sd")
        creates = []
        for dataset, model, code in ((chats, llm, "sft_lora"), (images, t2i, "t2i_lora")):
            repo = ModelRepo.objects.create(
                project=project,
                creator=alice,
                name=f"repo-{code}",
                scenario=dataset.scenario,
                location=f"repos/{project.pk}/{code}",
            )
            access.share_new(repo, Access.NONE)
            post = job_post(dataset, repo, spec, code, model=model)
            creates.append(_create_ms(client, post))
            print(f"create_job_ms_{code}: {creates[-1]:.1f} ms")
        print(f"create_job_ms_with_validated_data: {max(creates):.1f} ms")

        session = client.cookies["sessionid"].value
        scenario_id = chats.scenario_id
        status, upload_seconds, growth = _upload_through_a_server(
            data_root, session, scenario_id, chat
        )
        assert status == 302, status
        uploaded = Dataset.objects.get(name="uploaded")
        stored = data_root / uploaded.location
        assert stored.stat().st_size == chat.stat().st_size
        print(f"upload_rss_growth_mib: {growth:.1f} MiB")
        print(f"upload_mib_per_s: {chat.stat().st_size / 2**20 / upload_seconds:.0f} MiB/s")
    finally:
        from django.db import connections

        from config.celery import app

        app.control.purge()
        connections.close_all()
        benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        shutil.rmtree(data_root, ignore_errors=True)


if __name__ == "__main__":
    main()
