"""A real receiver on 127.0.0.1 that records what it is sent, and a worker that carries
out the deliveries queued, as the webhooks queue's worker would.

The cast (tests/conftest.py): dora administers the demo project, alice and bob are
its members, charlie is in another project, admin operates the site.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from finetune.services import jobs as job_services
from tests import factories
from tests.finetune import pages_support as support
from webhooks.models import SUBSCRIBABLE, Webhook


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def verified(self, secret: str) -> dict:
        """The message, if its signature is right for `secret` (else it raises)."""
        return Verifier(secret).verify(self.body, self.headers)

    @property
    def type(self) -> str:
        return json.loads(self.body)["type"]


class Receiver:
    """An HTTP server in a thread. It answers with the statuses in `answers`, in order,
    then 200; `locations` go with redirects."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                outer.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = outer.answers.pop(0) if outer.answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "12")
                self.end_headers()
                self.wfile.write(b"thanks, got!")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # a short poll: shutting down waits for one
        serve = functools.partial(self.server.serve_forever, poll_interval=0.02)
        self.thread = threading.Thread(target=serve, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def types(self) -> list[str]:
        return [request.type for request in self.received]


@pytest.fixture
def allow_private(settings):
    """The receiver is on this machine: the operator allowed private addresses."""
    settings.JINGTIAO_WEBHOOK_ALLOW_PRIVATE = True
    settings.JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.JINGTIAO_WEBHOOK_TIMEOUT_SECONDS = 2
    return settings


@pytest.fixture
def receiver(allow_private) -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def hook(project, dora, receiver) -> Webhook:
    """dora's webhook of the demo project, told about everything."""
    return Webhook.objects.create(
        project=project,
        url=receiver.url,
        events=[value for value, _label in SUBSCRIBABLE],
        created_by=dora,
    )


@dataclass
class Queued:
    delivery_id: int
    countdown: float | None


@pytest.fixture
def worker(django_capture_on_commit_callbacks, monkeypatch):
    """``with worker():`` commits what the block did (its on-commit callbacks run), then
    carries out every delivery queued, and those they queue in turn (retries), as the
    webhooks worker would; `worker.queued` keeps what was queued, with its countdown.
    Only the webhooks' messages: the scheduler's go their usual way."""
    from webhooks import services
    from webhooks.tasks import deliver

    queue: list[Queued] = []
    log: list[Queued] = []

    def enqueue(task, delivery_id: int) -> bool:
        countdown = getattr(task, "options", {}).get("countdown")
        queue.append(Queued(delivery_id, countdown))
        log.append(queue[-1])
        return True

    monkeypatch.setattr(services, "enqueue", enqueue)

    @contextmanager
    def working(*, carry_out: bool = True) -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield
        while carry_out and queue:
            with django_capture_on_commit_callbacks(execute=True):
                deliver.apply(args=[queue.pop(0).delivery_id], throw=True)

    working.queued = log  # type: ignore[attr-defined]
    working.pending = queue  # type: ignore[attr-defined]
    return working


@pytest.fixture
def new_job(project, alice):
    """``new_job()``: a job alice creates through the job module, as the page does."""
    algorithm = support.catalog()
    support.node()
    dataset = support.good_dataset(project, alice)

    def create():
        draft = job_services.JobDraft(
            name="webhooked",
            scenario=algorithm.scenario,
            algorithm=algorithm,
            pretrained_model=factories.pretrained_model(),
            train_dataset=dataset,
            model_repo=factories.model_repo(project, alice),
            node_specs=[factories.node_spec()],
            duration=timedelta(hours=1),
        )
        return job_services.create_job(alice, project, draft)

    return create
