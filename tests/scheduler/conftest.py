"""Fixtures for the executor and task tests: a kmock API server in a thread, a
fake trainer for the local backend, and running jobs of the cast."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import kmock
import pytest
import yaml

from finetune import states
from scheduler.executors import get_executor, local
from scheduler.executors.base import Placement
from tests import factories

NAMESPACE = "jingtiao-test"
RESOURCES = ["v1/pods", "v1/configmaps", "v1/secrets", "v1/services", "v1/events", "v1/nodes"]


class KubeServer:
    """kmock's emulator on a real port, driven from its own event loop thread,
    so the synchronous kubernetes client talks HTTP to it as to an API server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("kmock did not start")
        for resource in [*RESOURCES, "batch/v1/jobs"]:
            self.emulator.resources[resource] = {}

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            self.emulator, self.url = emulator, str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # --- the cluster's side --------------------------------------------------------------
    def stored(self, resource: str) -> dict[str, dict]:
        """Objects of a resource that exist now, by name."""
        return {
            name: obj.raw
            for (res, _namespace, name), obj in self.emulator.objects.items()
            if f"{res.group}/{res.version}/{res.plural}".lstrip("/") == resource and not obj.deleted
        }

    def put(self, resource: str, name: str, body: dict, namespace: str | None = NAMESPACE) -> None:
        body = {"metadata": {"name": name, "namespace": namespace}, **body}
        body["metadata"].setdefault("name", name)
        if namespace:
            body["metadata"].setdefault("namespace", namespace)
        self.emulator.objects[resource, namespace, name] = body

    def requests(self, method: str | None = None, path_part: str = "") -> list:
        return [
            request
            for request in list(self.emulator)
            if (method is None or request.method == method) and path_part in str(request.url)
        ]

    def react(self, method: str, path_part: str, reaction, times: int | None = None) -> None:
        """Answer matching requests with `reaction` (the next `times` ones, or all)."""
        budget = {"left": times}

        def matches(request) -> bool:
            if request.method != method or path_part not in str(request.url):
                return False
            if budget["left"] is None:
                return True
            if budget["left"]:
                budget["left"] -= 1
                return True
            return False

        self.emulator[matches] << reaction

    def fail_next(
        self, method: str, path_part: str, *, status: int = 500, sleep: float = 0
    ) -> None:
        """Make the next matching request fail with `status`, or hang for `sleep` seconds."""
        if sleep:
            self.react(method, path_part, lambda: asyncio.sleep(sleep), times=1)
        else:
            error = kmock.KubernetesError(status, "Injected", "injected failure")
            self.react(method, path_part, error, times=1)


@pytest.fixture
def kube(settings, tmp_path) -> Iterator[KubeServer]:
    """The kubernetes backend, configured through a kubeconfig file, against kmock."""
    server = KubeServer()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server.url}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
                "current-context": "kmock",
            }
        )
    )
    settings.JINGTIAO_EXECUTOR = "kubernetes"
    settings.JINGTIAO_K8S_KUBECONFIG = str(kubeconfig)
    settings.JINGTIAO_K8S_NAMESPACE = NAMESPACE
    settings.JINGTIAO_K8S_REQUEST_TIMEOUT = 1
    get_executor.cache_clear()
    yield server
    get_executor.cache_clear()
    server.close()


@pytest.fixture
def local_backend(settings) -> Iterator[None]:
    settings.JINGTIAO_EXECUTOR = "local"
    settings.JINGTIAO_STOP_GRACE_SECONDS = 1
    get_executor.cache_clear()
    yield
    get_executor.cache_clear()


FAKE_TRAINER = textwrap.dedent(
    """\
    import json, os, sys, time
    from pathlib import Path
    spec = json.loads(Path(sys.argv[1]).read_text())
    behaviour = spec["parameters"].get("behaviour", "succeed")
    rank = os.environ.get("RANK", "0")  # a job of one process is not told its rank
    print("rank", rank, "of", os.environ.get("WORLD_SIZE", "1"), flush=True)
    print("devices", repr(os.environ.get("CUDA_VISIBLE_DEVICES")),
          repr(os.environ.get("MLU_VISIBLE_DEVICES")),
          repr(os.environ.get("CAMBRICON_VISIBLE_DEVICES")), flush=True)
    print("token", spec["report"]["token"], flush=True)
    if behaviour == "succeed" and rank != "0":
        sys.exit(0)
    if behaviour == "succeed":
        out = Path(spec["output_dir"])
        out.mkdir(parents=True)
        (out / "manifest.json").write_text(json.dumps({"metrics": {"loss": 0.5}}))
        sys.exit(0)
    if behaviour == "fail":
        # one write, as logging writes a record: under torchrun two ranks share the log,
        # and print's line and its newline are two writes another rank can come between
        sys.stdout.write("RuntimeError: CUDA out of memory\\n")
        sys.stdout.flush()
        sys.exit(3)
    if behaviour == "chatty":
        for line in range(20000):
            print(f"line {line:05d} " + "x" * 40)
        sys.exit(0)
    if behaviour == "stubborn":
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    release = Path(spec["output_dir"] + ".release")
    while not release.exists():
        time.sleep(0.05)
    sys.exit(int(release.read_text() or 0))
    """
)


@pytest.fixture
def fake_trainer(local_backend, tmp_path, monkeypatch) -> Path:
    """Workers run a small script instead of the trainer: what it does comes from
    the job's parameters ("behaviour"), so each test picks a success, a failure..."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    monkeypatch.setattr(
        local, "trainer_command", lambda spec: [sys.executable, str(script), str(spec)]
    )
    return script


@pytest.fixture
def running_job(project, alice) -> Callable[..., object]:
    """A job of alice's, admitted (RUNNING), as admission leaves it before launching."""

    def make(**fields):
        job = factories.job(project, alice, **fields)
        states.transition(job, "running")
        return job

    return make


def placement(nodes: tuple[str, ...] = ("node-a",), **fields) -> Placement:
    values = {
        "spec_id": 1,
        "cpu_millis": 4000,
        "memory_mib": 8192,
        "device_type": "mlu",
        "devices_per_node": 2,
        "nodes": nodes,
    }
    values.update(fields)
    return Placement(**values)
