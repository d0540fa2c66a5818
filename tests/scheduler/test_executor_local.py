"""The local backend end to end, with real processes (a fake trainer script)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from finetune.models import JobEvent, JobStatus
from finetune.storage import job_dir, resolve
from scheduler.executors.base import LaunchRequest, Phase
from scheduler.executors.local import LocalExecutor, detect_devices
from scheduler.launching import launch_job
from scheduler.tasks import observe_running_jobs
from tests.scheduler.conftest import placement

pytestmark = pytest.mark.django_db


# A waiting budget, not a speed: torchrun and its ranks start in seconds on a quiet
# machine, and far slower while the rest of the suite loads both cores.
PATIENCE = 90


def wait_for(job_id: int, phases: set[Phase], timeout: float = PATIENCE) -> object:
    """Observe through a fresh executor each time, as a restarted worker would."""
    deadline = time.monotonic() + timeout
    while True:
        state = LocalExecutor().observe([job_id])[job_id]
        if state.phase in phases or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def wait_for_output(job_id: int, text: str, timeout: float = PATIENCE, count: int = 1) -> None:
    """Until ``text`` stands ``count`` times in the log (ranks that print at once share
    it, their words interleaved: wait for a word of each then)."""
    log = job_dir(job_id) / "worker-0.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {log}")


def release(job, code: int = 0) -> None:
    out = resolve(job.model_repo.location) / f"job-{job.pk}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".release").write_text(str(code))


def test_a_job_that_succeeds_becomes_succeeded_with_a_model_version(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "succeed"})

    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.SUCCEEDED}).phase == Phase.SUCCEEDED
    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.output_version.number == 1
    assert job.output_version.metrics == {"loss": 0.5}
    assert job.output_version.location.endswith(f"/job-{job.pk}")
    assert "exited with code 0" in job.status_reason
    spec = json.loads((job_dir(job.pk) / "spec.json").read_text())
    assert job.report_token_hash == hashlib.sha256(spec["report"]["token"].encode()).hexdigest()
    assert job.run_command.endswith(str(job_dir(job.pk) / "spec.json"))
    assert JobEvent.objects.filter(job=job, kind=JobEvent.Kind.LAUNCH).count() == 1
    log = (job_dir(job.pk) / "worker-0.log").read_text()
    assert "rank 0 of 1" in log


def test_a_job_that_fails_is_failed_with_its_exit_code_and_last_log_lines(
    fake_trainer, running_job
):
    job = running_job(parameters={"behaviour": "fail"})

    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.FAILED})
    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    # one line: what failed and the last line of its log; the lines before kept apart
    assert job.status_reason == "worker 0 exited with code 3: RuntimeError: CUDA out of memory"
    event = job.events.get(to_status=JobStatus.FAILED)
    assert event.data["log_excerpt"].startswith("rank 0 of 1")
    assert event.data["log_excerpt"].endswith("RuntimeError: CUDA out of memory")
    assert job.output_version is None


def test_a_stopped_job_has_its_process_group_terminated(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    wait_for_output(job.pk, "token")
    pid = json.loads((job_dir(job.pk) / "worker-0.json").read_text())["pid"]

    LocalExecutor().stop(job.pk)

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    state = wait_for(job.pk, {Phase.FAILED})
    assert state.exit_code == -signal.SIGTERM
    assert "SIGTERM" in state.reason
    LocalExecutor().stop(job.pk)  # a second stop is harmless


def _fake_ranks(script: Path) -> list[psutil.Process]:
    """The live processes that run the fake trainer script (one per rank)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = process.info["cmdline"] or []
        ours = command[1:2] == [str(script)]  # the rank itself, not its launcher
        if ours and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def test_a_job_of_two_processes_stops_with_every_rank_and_fails_on_the_first(
    fake_trainer, running_job
):
    """Under torchrun: a stop ends the launcher and both ranks, none left behind; a
    failure reads the ranks' own lines, not torchrun's report after them."""
    two = placement(device_type="none", devices_per_node=0, processes_per_node=2)
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, two)
    try:
        assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
        wait_for_output(job.pk, "rank", count=2)  # both ranks have started
        assert len(_fake_ranks(fake_trainer)) == 2
    finally:
        LocalExecutor().stop(job.pk)  # whatever failed above: nothing left running

    assert _fake_ranks(fake_trainer) == []
    assert job.pk not in LocalExecutor().managed_job_ids()

    failing = running_job(parameters={"behaviour": "fail"})
    launch_job(failing, two)
    state = wait_for(failing.pk, {Phase.FAILED})
    assert state.reason.endswith(": RuntimeError: CUDA out of memory"), state.reason
    assert "ChildFailedError" not in state.log_excerpt


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(
    fake_trainer, running_job, settings
):
    settings.JINGTIAO_STOP_GRACE_SECONDS = 0.5
    job = running_job(parameters={"behaviour": "stubborn"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for_output(job.pk, "token")
    time.sleep(0.2)  # let the script install its SIGTERM handler

    started = time.monotonic()
    LocalExecutor().stop(job.pk)

    assert time.monotonic() - started >= 0.5
    state = wait_for(job.pk, {Phase.FAILED})
    assert "without an exit code" in state.reason
    assert LocalExecutor().managed_job_ids() == set()


def test_a_restarted_worker_reattaches_and_settles_what_ended_while_away(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "wait"})
    first = LocalExecutor()
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    del first  # the Celery worker that launched it is gone

    restarted = LocalExecutor()
    assert restarted.observe([job.pk])[job.pk].phase == Phase.RUNNING
    assert restarted.managed_job_ids() == {job.pk}
    observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING

    release(job, code=0)  # the trainer ends while no one watches
    output = resolve(job.model_repo.location) / f"job-{job.pk}"
    output.mkdir()
    (output / "manifest.json").write_text("{}")  # what the trainer writes last
    assert wait_for(job.pk, {Phase.SUCCEEDED}).exit_code == 0
    observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def test_a_reused_pid_is_not_taken_for_the_worker(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.RUNNING})
    meta_path = job_dir(job.pk) / "worker-0.json"
    meta = json.loads(meta_path.read_text())
    # Pretend the recorded process died and its pid now belongs to someone else.
    meta["create_time"] -= 3600
    meta_path.write_text(json.dumps(meta))

    state = LocalExecutor().observe([job.pk])[job.pk]

    assert state.phase == Phase.FAILED
    os.killpg(meta["pid"], signal.SIGKILL)


def test_launching_twice_starts_the_workers_once(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.RUNNING})
    executor = LocalExecutor()
    meta = (job_dir(job.pk) / "worker-0.json").read_text()
    spec = json.loads((job_dir(job.pk) / "spec.json").read_text())
    from scheduler.executors.base import LaunchRequest

    executor.launch(
        LaunchRequest(
            job_id=job.pk,
            placement=placement(device_type="none", devices_per_node=0),
            trainer_spec=spec,
            report_token=spec["report"]["token"],
        )
    )

    assert (job_dir(job.pk) / "worker-0.json").read_text() == meta
    executor.stop(job.pk)


def test_workers_see_the_rank_world_size_and_only_their_devices(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "succeed"})
    launch_job(
        job,
        placement(
            nodes=("here", "there"),
            device_type="gpu",
            device_ids={"here": (1, 3), "there": (0,)},
        ),
    )
    wait_for(job.pk, {Phase.SUCCEEDED, Phase.FAILED})

    logs = {chunk.worker: chunk.text for chunk in LocalExecutor().logs(job.pk)}
    assert "rank 0 of 2" in logs[0] and "devices '1,3' '' ''" in logs[0]
    assert "rank 1 of 2" in logs[1] and "devices '0' '' ''" in logs[1]


def test_mlu_workers_see_their_devices_under_cambricons_name(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "succeed"})
    launch_job(job, placement(nodes=("here",), device_type="mlu", device_ids={"here": (2, 5)}))
    wait_for(job.pk, {Phase.SUCCEEDED, Phase.FAILED})

    [chunk] = LocalExecutor().logs(job.pk)
    assert "devices '' '2,5' '2,5'" in chunk.text  # CUDA, MLU, CAMBRICON_VISIBLE_DEVICES


def test_logs_page_by_byte_offset(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "chatty"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.SUCCEEDED})
    executor = LocalExecutor()

    pages, cursor = [], None
    while not (pages and pages[-1].complete) and len(pages) < 20:
        [page] = executor.logs(job.pk, cursor)
        pages.append(page)
        cursor = page.next_since

    assert len(pages) > 2
    assert all(len(p.text.encode()) <= 256 * 1024 and p.text.endswith("\n") for p in pages)
    assert not pages[0].complete and pages[-1].complete
    whole = (job_dir(job.pk) / "worker-0.log").read_text()
    assert "".join(page.text for page in pages) == whole
    assert executor.logs(job.pk, cursor)[0].text == ""


def test_events_say_when_workers_started_and_how_they_ended(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "fail"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.FAILED})

    events = LocalExecutor().events(job.pk)

    assert [event.reason for event in events] == ["Started", "Exited"]
    assert events[1].kind == "Warning" and "code 3" in events[1].message


def test_the_run_command_is_the_trainer_on_the_job_spec(local_backend):
    def command(**fields):
        request = LaunchRequest(7, placement(**fields), {}, "token")
        return LocalExecutor().run_command(request)

    # one process: the trainer itself
    assert command(devices_per_node=1).endswith(f"-m trainer run --spec {job_dir(7) / 'spec.json'}")
    assert "torch.distributed.run" not in command(devices_per_node=1)
    # two nodes of two processes: torchrun on each, node rank and port from its environment
    two = command(nodes=("a", "b"), processes_per_node=2)
    assert "-m torch.distributed.run --nnodes=2 --node-rank=$NODE_RANK --nproc-per-node=2" in two
    assert "--master-addr=127.0.0.1 --master-port=$MASTER_PORT" in two
    assert two.endswith(
        f"--no-python {sys.executable} -m trainer run --spec {job_dir(7)}/spec.json"
    )


def test_this_machine_can_be_presented_as_several_nodes(local_backend, settings, monkeypatch):
    """JINGTIAO_LOCAL_NODES=2: two nodes sharing out the CPUs, memory and devices, each
    rank seeing the devices of its own half of the machine."""
    from scheduler.executors import local

    settings.JINGTIAO_LOCAL_NODE_NAME = "box"
    settings.JINGTIAO_LOCAL_NODES = 2
    monkeypatch.setattr(local, "detect_devices", lambda: ("gpu", 8))

    nodes = LocalExecutor().nodes()

    assert [node.name for node in nodes] == ["box-0", "box-1"]
    assert {node.cpu_millis for node in nodes} == {os.cpu_count() * 1000 // 2}
    assert {(node.device_type, node.device_count) for node in nodes} == {("gpu", 4)}
    ids = {"box-0": (1, 2), "box-1": (0, 3)}
    two = LaunchRequest(
        7, placement(("box-0", "box-1"), device_type="gpu", device_ids=ids), {}, "token"
    )
    first = {node.name: first for node, first in local.local_nodes()}
    assert first == {"box-0": 0, "box-1": 4}
    assert local._worker_env(two, 0, 29500, first)["CUDA_VISIBLE_DEVICES"] == "1,2"
    assert local._worker_env(two, 1, 29500, first)["CUDA_VISIBLE_DEVICES"] == "4,7"
    assert local._worker_env(two, 1, 29500, first)["NODE_RANK"] == "1"


def test_the_one_node_is_this_machine(local_backend, settings):
    settings.JINGTIAO_LOCAL_NODE_NAME = "workstation"

    [node] = LocalExecutor().nodes()

    assert node.name == "workstation"
    assert node.cpu_millis == os.cpu_count() * 1000
    assert node.memory_mib == psutil.virtual_memory().total // 2**20
    assert (node.device_type, node.device_count) == detect_devices()


def test_a_stop_during_launch_tears_the_new_workers_down(fake_trainer, running_job):
    """The user's stop commits while the workers are being spawned (issue 12, item 4):
    the launch sees it under the row's lock and tears them down at once; no LAUNCH
    event follows the STOPPED one."""
    from finetune import states
    from scheduler.executors import local

    job = running_job(parameters={"behaviour": "wait"})
    spawn = local.LocalExecutor.launch

    def launch_then_stop(self, request):
        spawn(self, request)
        states.transition(job, JobStatus.STOPPED, reason="stopped by alice")

    local.LocalExecutor.launch = launch_then_stop
    try:
        assert launch_job(job, placement(device_type="none", devices_per_node=0)) is False
    finally:
        local.LocalExecutor.launch = spawn
    assert LocalExecutor().observe([job.pk])[job.pk].phase != Phase.RUNNING
    assert LocalExecutor().managed_job_ids() == set()
    assert not job.events.filter(kind=JobEvent.Kind.LAUNCH).exists()


def test_killing_a_supervisor_takes_its_trainer_with_it(fake_trainer, running_job):
    """Issue 12, item 2: a supervisor killed (SIGKILL) leaves no trainer training on."""
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    meta = json.loads((job_dir(job.pk) / "worker-0.json").read_text())
    supervisor = psutil.Process(meta["pid"])
    deadline = time.monotonic() + 10
    while not supervisor.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    trainer = supervisor.children()[0]
    os.kill(supervisor.pid, signal.SIGKILL)
    trainer.wait(timeout=10)  # raises psutil.TimeoutExpired if it trains on
    assert not trainer.is_running()


def _trainers_of(job) -> list[psutil.Process]:
    """The fake trainers running for `job` (their command names its spec)."""
    spec = str(job_dir(job.pk) / "spec.json")
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if spec in cmdline and "-c" not in cmdline:
            found.append(process)
    return found


def _started_trainers(job, timeout: float = 10) -> list[psutil.Process]:
    """The job's trainers once the supervisor has started one (it takes a moment)."""
    deadline = time.monotonic() + timeout
    while not _trainers_of(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _trainers_of(job)


def test_a_relaunch_ends_a_worker_whose_launcher_died_before_recording_it(
    fake_trainer, running_job
):
    """Issue 12, item 1: the Celery worker died after the spawn, before worker-0.json was
    written; the trainer ran on, invisible. The relaunch finds it by its command line,
    which names the job's folder, and ends its session first: never two trainers for
    one rank. (Supervisors now write their own record, so only a record lost later
    leaves a worker unrecorded; this is that case.)"""
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    first = _started_trainers(job)
    assert len(first) == 1
    (job_dir(job.pk) / "worker-0.json").unlink()  # the record that never landed
    assert LocalExecutor().managed_job_ids() == {job.pk}  # reconcile still sees it

    launch_job(job, placement(device_type="none", devices_per_node=0))  # a new attempt

    first[0].wait(timeout=10)
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    _started_trainers(job)
    assert [p.pid for p in _trainers_of(job)] != [first[0].pid]
    assert len(_trainers_of(job)) == 1
    LocalExecutor().stop(job.pk)
    assert _trainers_of(job) == []


def test_an_exit_code_left_by_an_earlier_attempt_is_not_read_for_the_new_one(
    fake_trainer, running_job
):
    job = running_job(parameters={"behaviour": "wait"})
    folder = job_dir(job.pk)
    folder.mkdir(parents=True)
    (folder / "worker-0.exit").write_text("0")  # an orphan's, from an attempt gone by
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    time.sleep(0.3)
    assert LocalExecutor().observe([job.pk])[job.pk].phase == Phase.RUNNING
    LocalExecutor().stop(job.pk)


def test_stop_ends_a_worker_that_was_never_recorded(fake_trainer, running_job):
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    trainer = _started_trainers(job)[0]
    (job_dir(job.pk) / "worker-0.json").unlink()
    LocalExecutor().stop(job.pk)
    trainer.wait(timeout=10)
    assert LocalExecutor().managed_job_ids() == set()


def test_a_job_admitted_but_never_recorded_is_requeued_with_its_stray_worker_ended(
    fake_trainer, running_job, settings
):
    """The launcher died after spawning, before any record or LAUNCH event: the job goes
    back to the queue, and the worker it may have started does not run on."""
    from datetime import timedelta

    from django.utils import timezone

    from finetune.models import Job

    settings.JINGTIAO_MISSING_GRACE_SECONDS = 60
    job = running_job(parameters={"behaviour": "wait"})
    LocalExecutor().launch(_request_for(job))  # spawned; no LAUNCH event written
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    trainer = _started_trainers(job)[0]
    (job_dir(job.pk) / "worker-0.json").unlink()
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(minutes=5))

    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    trainer.wait(timeout=10)


def test_a_launch_overtaken_by_a_newer_one_leaves_it_alone(fake_trainer, running_job):
    """A stop and a new admission while launch A was starting: launch B replaced A's
    workers and holds the token; A's check must not tear B down."""
    from finetune.models import Job
    from scheduler.executors import local

    job = running_job(parameters={"behaviour": "wait"})
    spawn = local.LocalExecutor.launch

    def launch_then_overtaken(self, request):
        spawn(self, request)
        Job.objects.filter(pk=job.pk).update(report_token_hash="b" * 64)  # B's token

    local.LocalExecutor.launch = launch_then_overtaken
    try:
        assert launch_job(job, placement(device_type="none", devices_per_node=0)) is False
    finally:
        local.LocalExecutor.launch = spawn
    assert LocalExecutor().observe([job.pk])[job.pk].phase == Phase.RUNNING  # not torn down
    LocalExecutor().stop(job.pk)


def _request_for(job):
    from scheduler.executors.base import LaunchRequest
    from scheduler.launching import trainer_spec

    return LaunchRequest(
        job_id=job.pk,
        placement=placement(device_type="none", devices_per_node=0),
        trainer_spec=trainer_spec(job, "token-a"),
        report_token="token-a",
    )


def test_a_launcher_that_dies_right_after_the_spawn_loses_nothing(
    fake_trainer, running_job, monkeypatch
):
    """The supervisor writes its own record before the trainer starts: the launcher's
    death a moment after the spawn leaves a recorded, observable worker."""
    from scheduler.executors import local

    class LauncherDied(BaseException):
        pass

    def die_at(point):
        if point == "launch.after_spawn":
            raise LauncherDied

    monkeypatch.setattr(local.failpoints, "failpoint", die_at)
    job = running_job(parameters={"behaviour": "wait"})
    with pytest.raises(LauncherDied):
        LocalExecutor().launch(_request_for(job))
    state = wait_for(job.pk, {Phase.RUNNING})
    assert state.phase == Phase.RUNNING
    (trainer,) = _started_trainers(job)
    record = json.loads((job_dir(job.pk) / "worker-0.json").read_text())
    assert psutil.Process(trainer.pid).ppid() == record["pid"]
    assert record["launch"] == hashlib.sha256(b"token-a").hexdigest()
    LocalExecutor().stop(job.pk)
    assert _trainers_of(job) == []


def test_a_relaunch_starts_from_an_empty_output_folder(fake_trainer, running_job):
    """What an abandoned attempt saved (it was requeued as it finished) is no model of
    the job's: the relaunch's trainer must not find it in its way."""
    from scheduler.launching import output_dir

    job = running_job(parameters={"behaviour": "succeed"})
    left = Path(output_dir(job))
    left.mkdir(parents=True)
    (left / "manifest.json").write_text("{}")
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.SUCCEEDED, Phase.FAILED}).phase == Phase.SUCCEEDED
    assert json.loads((left / "manifest.json").read_text()) == {"metrics": {"loss": 0.5}}


def test_a_failure_reason_is_one_line_whatever_the_log(client, running_job, fake_trainer, alice):
    """Issue 19, item 3: a traceback went into the status line and the page grew 8,837 px
    wide. The status says what failed in one line; the log's last lines are folded."""
    from django.urls import reverse

    from scheduler.executors.base import failure_detail

    def failure_line(reason, log):
        return failure_detail(reason, log)[0]

    traceback = "\n".join(["Traceback (most recent call last):", *(["  x" * 400] * 30)])
    line = failure_line("worker 0 exited with code 1", traceback + "\njingtiao: failed: boom")
    assert line == "worker 0 exited with code 1: boom"
    long = failure_line("worker 0 exited with code 1", "ValueError: " + "y" * 1000)
    assert len(long) == 300 and "\n" not in long
    # killed mid-step, its log ends on a progress line: that says nothing of why
    killed = "2026-12-01 14:11:05 INFO jingtiao: job 3: sft_lora on cpu, rank 0 of 1"
    assert failure_line("worker 0 was killed by signal SIGKILL", killed) == (
        "worker 0 was killed by signal SIGKILL"
    )
    # several ranks on a node: the one that failed by itself, not the ones torchrun ended
    # after it, and not torchrun's report of them that follows
    torchrun = [
        "[rank 1] jingtiao: failed: ValueError: bad row",
        "[rank 0] jingtiao: failed: terminated by SIGTERM",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
        *(["  exitcode  : 1 (pid: 5565)"] * 30),
    ]
    line, excerpt = failure_detail("worker 0 exited with code 1", "\n".join(torchrun))
    assert line == "worker 0 exited with code 1: rank 1: ValueError: bad row"
    assert excerpt == "[rank 1] jingtiao: failed: ValueError: bad row"

    job = running_job(parameters={"behaviour": "fail"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.FAILED})
    observe_running_jobs()
    client.force_login(alice)
    page = client.get(reverse("finetune:job_detail", args=[job.pk])).content.decode()
    assert 'data-testid="failure-log"' in page and "<summary>" in page
    assert "exited with code 3: RuntimeError: CUDA out of memory" in page


def test_a_process_that_only_reads_a_jobs_files_is_never_taken_for_its_worker(
    fake_trainer, running_job
):
    """An operator's `tail -f` of a job's log names the job's folder too: stop, reconcile
    and relaunch must leave it (and its session, a login shell's) alone."""
    import subprocess
    import sys

    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    assert wait_for(job.pk, {Phase.RUNNING}).phase == Phase.RUNNING
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(60)",
         str(job_dir(job.pk) / "worker-0.log")],
        start_new_session=True,
    )  # fmt: skip
    try:
        LocalExecutor().stop(job.pk)
        assert reader.poll() is None
        assert LocalExecutor().managed_job_ids() == set()
    finally:
        reader.kill()
        reader.wait()
