"""``python -m trainer run``: outcomes, failures and their last line, atomic output."""

import ctypes.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

FAST = {
    "batch_size": 8,
    "max_length": 64,
    "logging_steps": 1,
    "max_steps": 8,
    "learning_rate": 1e-2,
}


class Boom(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("boom at step 3")


def test_a_crash_mid_run_leaves_no_output_and_says_why_last(make_spec, train, tiny_llm, data):
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        parameters=FAST,
    )
    outcome = train(spec, extra_callbacks=[Boom()])
    assert outcome.status == 1
    assert outcome.last_line == "jingtiao: failed: RuntimeError: boom at step 3"
    assert not outcome.output.exists()
    assert not (outcome.output.parent / ".output.partial").exists()


def test_bad_training_data_is_refused_before_training_with_its_row(
    make_spec, train, tiny_llm, tmp_path
):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    spec = make_spec(algorithm="pretrain", scenario="llm/pretrain", base_model=tiny_llm, train=bad)
    outcome = train(spec)
    assert outcome.status == 2
    assert outcome.last_line.startswith("jingtiao: failed: training data")
    assert "row 2, field 'text': missing field" in outcome.last_line
    assert not outcome.output.exists()


def test_invalid_parameters_are_refused_naming_the_parameter(make_spec, train, tiny_llm, data):
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        parameters={"learning_rate": -1},
    )
    outcome = train(spec)
    assert outcome.status == 2
    assert "learning_rate" in outcome.last_line and outcome.last_line.startswith("jingtiao: failed")


def test_it_refuses_to_overwrite_a_finished_output(make_spec, train, tiny_llm, data):
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        parameters=FAST,
    )
    output = json.loads(spec.read_text())["output_dir"]
    (tmp := Path(output)).mkdir()
    (tmp / "manifest.json").write_text("{}")
    outcome = train(spec)
    assert outcome.status == 2 and "not empty" in outcome.last_line
    assert (tmp / "manifest.json").read_text() == "{}"


def run_cli(spec, repo_root, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "run", "--spec", str(spec)],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_the_cli_trains_reports_to_the_platform_and_publishes(
    make_spec, tiny_llm, data, report_server, repo_root
):
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_alpaca"],
        validation=data["sft_alpaca_val"],
        test=data["sft_alpaca_val"],
        parameters={**FAST, "eval_strategy": "steps", "eval_steps": 4},
        report={
            "url": report_server.url,
            "token": "job-token",
            "interval": 0.5,
            "sample_seconds": 0.2,
        },
    )
    process = run_cli(spec, repo_root)
    out, _ = process.communicate(timeout=300)
    lines = out.strip().splitlines()
    output = json.loads(spec.read_text())["output_dir"]
    assert process.returncode == 0, out[-3000:]
    assert lines[-1] == f"jingtiao: succeeded: output saved to {output}"
    manifest = json.loads((Path(output) / "manifest.json").read_text())
    assert manifest["job_id"] == 42 and manifest["algorithm"] == "sft_lora"
    assert "job-token" not in json.dumps(manifest)  # the secret stays out of the output
    metrics = report_server.metrics
    assert [m["step"] for m in metrics if "loss" in m][:2] == [1, 2]
    assert any("eval_loss" in m for m in metrics) and any("test_loss" in m for m in metrics)
    assert metrics[-1]["progress"] == 1.0
    assert any(m.get("tokens_per_second", 0) > 0 for m in metrics)
    assert report_server.resources and report_server.resources[-1]["memory_bytes"] > 0
    assert len(report_server.resources) >= 3  # sampled every 0.2 s, as the spec asks
    assert all(h["Authorization"] == "Bearer job-token" for h in report_server.headers)


def test_a_run_the_platform_no_longer_counts_stops_within_a_report_interval(
    make_spec, tiny_llm, data, start_report_server, repo_root
):
    """Its job was stopped while the broker was down (no teardown came), or it was
    launched again: the platform's answer to its reports stops it."""
    body = b'{"error": "the job is stopped; it takes no more reports", "stop": true}'
    server = start_report_server(status=410, body=body)
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_alpaca"],
        parameters={**FAST, "max_steps": 100_000},
        report={"url": server.url, "token": "job-token", "interval": 0.5, "sample_seconds": 0.2},
    )
    process = run_cli(spec, repo_root)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 143, out[-3000:]  # EXIT_TERMINATED, as after a stop
    assert "the platform says this run is over" in out
    assert out.strip().splitlines()[-1] == "jingtiao: failed: terminated by SIGTERM"
    assert not (Path(json.loads(spec.read_text())["output_dir"]) / "manifest.json").exists()


JEMALLOC = ctypes.util.find_library("jemalloc")


def _env_without_malloc_settings(**settings: str) -> dict[str, str]:
    ours = ("LD_PRELOAD", "JINGTIAO_MALLOC", "MALLOC_CONF")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    return {**env, **settings}


@pytest.mark.skipif(not JEMALLOC, reason="the system has no jemalloc")
@pytest.mark.parametrize(
    ("chosen", "malloc"), [({}, "jemalloc"), ({"JINGTIAO_MALLOC": "system"}, "system")]
)
def test_the_cli_trains_on_jemalloc_unless_told_to_keep_the_system_malloc(
    make_spec, tiny_llm, data, repo_root, chosen, malloc
):
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_alpaca"],
        parameters={**FAST, "max_steps": 2},
    )
    process = run_cli(spec, repo_root, env=_env_without_malloc_settings(**chosen))
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-3000:]
    assert f"rank 0 of 1, malloc {malloc}" in out  # read from the process's memory map


def test_an_unknown_malloc_setting_fails_the_cli_naming_the_choices(
    make_spec, tiny_llm, data, repo_root
):
    spec = make_spec(
        algorithm="sft_lora", scenario="llm/sft", base_model=tiny_llm, train=data["sft_alpaca"]
    )
    env = _env_without_malloc_settings(JINGTIAO_MALLOC="tcmalloc")
    process = run_cli(spec, repo_root, env=env)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert out.strip().splitlines()[-1] == (
        "jingtiao: failed: JINGTIAO_MALLOC='tcmalloc': expected one of jemalloc, system"
    )


@pytest.mark.skipif(not JEMALLOC, reason="the system has no jemalloc")
@pytest.mark.parametrize(
    "env",
    [
        {"JINGTIAO_MALLOC": "system"},
        {"LD_PRELOAD": "libasan.so.8"},  # someone else chose the process's libraries
    ],
)
def test_jemalloc_is_not_preloaded_when_kept_out_or_another_library_is(env):
    from trainer.allocator import jemalloc_environment

    assert jemalloc_environment(env) is None


@pytest.mark.skipif(not JEMALLOC, reason="the system has no jemalloc")
def test_jemalloc_keeps_freed_pages_unless_told_otherwise():
    from trainer.allocator import jemalloc_environment

    env = jemalloc_environment({"PATH": "/usr/bin"})
    assert env == {
        "PATH": "/usr/bin",
        "LD_PRELOAD": JEMALLOC,
        "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
    }
    assert jemalloc_environment({"MALLOC_CONF": "narenas:2"})["MALLOC_CONF"] == "narenas:2"


@pytest.mark.parametrize("value", [0, -1, "5", True])
def test_report_timings_must_be_positive_seconds(make_spec, tiny_llm, data, value):
    from trainer.spec import SpecError, parse_spec

    path = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_alpaca"],
        report={"url": "http://platform/report", "token": "t", "sample_seconds": value},
    )
    with pytest.raises(SpecError, match=r"report\.sample_seconds"):
        parse_spec(json.loads(path.read_text()))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_the_run_without_a_complete_looking_output(
    make_spec, tiny_llm, data, repo_root
):
    spec = make_spec(
        algorithm="sft_full",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        parameters={**FAST, "max_steps": 100000},
    )
    process = run_cli(spec, repo_root)
    lines = []
    deadline = time.monotonic() + 120
    for line in process.stdout:  # wait until training steps are being logged
        lines.append(line)
        if "step 2," in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=60)
    lines += rest.splitlines()
    assert process.returncode == 143
    assert lines[-1].strip() == "jingtiao: failed: terminated by SIGTERM"
    output = Path(json.loads(spec.read_text())["output_dir"])
    assert not output.exists()
    assert not (output.parent / ".output.partial").exists()
