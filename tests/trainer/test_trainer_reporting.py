import socket
import time

import pytest

from trainer.reporting import Reporter
from trainer.resources import ResourceSampler, parse_cnmon


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_posts_batches_with_the_job_token_and_increasing_seq(report_server):
    reporter = Reporter(report_server.url, "s3cret", 7, "node-a-rank0", interval=0.05)
    for step in range(1, 4):
        reporter.metric(step=step, loss=2.0 / step, learning_rate=1e-3, progress=step / 3)
        time.sleep(0.15)
    reporter.resource(cpu_percent=50.0, memory_bytes=1234)
    assert reporter.close(timeout=5)
    assert [m["step"] for m in report_server.metrics] == [1, 2, 3]
    assert report_server.metrics[0]["loss"] == 2.0 and "time" in report_server.metrics[0]
    assert report_server.resources[0]["memory_bytes"] == 1234
    assert report_server.resources[0]["worker"] == "node-a-rank0"
    seqs = [b["seq"] for b in report_server.batches]
    assert seqs == list(range(1, len(seqs) + 1))
    assert {(b["job_id"], b["worker"]) for b in report_server.batches} == {(7, "node-a-rank0")}
    assert all(h["Authorization"] == "Bearer s3cret" for h in report_server.headers)


def test_it_keeps_metrics_while_the_platform_is_down_and_delivers_them_later(start_report_server):
    port = unused_port()
    reporter = Reporter(
        f"http://127.0.0.1:{port}/r", "t", 1, "w", interval=0.05, backoff_base=0.05, backoff_max=0.2
    )
    for step in range(5):
        reporter.metric(step=step, loss=1.0)
    time.sleep(0.6)  # several failed attempts against a closed port
    assert reporter.sent_batches == 0
    server = start_report_server(port=port)
    assert wait_for(lambda: len(server.metrics) == 5)
    reporter.metric(step=5, loss=0.5)
    assert reporter.close(timeout=5)
    assert [m["step"] for m in server.metrics] == [0, 1, 2, 3, 4, 5]
    seqs = [b["seq"] for b in server.batches]
    assert seqs == sorted(set(seqs))  # the retried batch kept its seq and arrived once


def test_it_resends_a_batch_the_platform_failed_with_the_same_seq(start_report_server):
    server = start_report_server(status=503)
    reporter = Reporter(server.url, "t", 1, "w", interval=0.05, backoff_base=0.05, backoff_max=0.1)
    reporter.metric(step=1, loss=1.0)
    time.sleep(0.4)
    server.status = 200
    assert reporter.close(timeout=5)
    assert [(b["seq"], len(b["metrics"])) for b in server.batches] == [(1, 1)]


def test_a_full_buffer_drops_resource_samples_before_metrics():
    reporter = Reporter(
        f"http://127.0.0.1:{unused_port()}/r",
        "t",
        1,
        "w",
        interval=60,
        max_buffer=10,
        max_batch=1000,
    )
    for step in range(6):
        reporter.metric(step=step, loss=1.0)
    for _ in range(10):
        reporter.resource(cpu_percent=1.0)
    assert reporter.dropped == 6
    assert len(reporter._metrics) == 6 and len(reporter._resources) == 4


def test_closing_while_the_platform_is_away_returns_quickly_without_raising():
    reporter = Reporter(
        f"http://127.0.0.1:{unused_port()}/r", "t", 1, "w", interval=0.05, backoff_base=0.05
    )
    reporter.metric(step=1, loss=1.0)
    started = time.monotonic()
    assert reporter.close(timeout=0.5) is False
    assert time.monotonic() - started < 3


def test_a_refused_batch_is_dropped_so_later_ones_still_flow(start_report_server):
    server = start_report_server(status=401)
    reporter = Reporter(server.url, "bad", 1, "w", interval=0.05)
    reporter.metric(step=1, loss=1.0)
    assert wait_for(lambda: reporter.sent_batches == 1)
    assert reporter.close(timeout=2)


def test_a_platform_that_says_the_run_is_over_is_obeyed_once(start_report_server):
    body = b'{"error": "the job is stopped; it takes no more reports", "stop": true}'
    server = start_report_server(status=410, body=body)
    told = []
    reporter = Reporter(server.url, "t", 1, "w", interval=0.05, on_revoked=told.append)
    for step in range(3):
        reporter.metric(step=step, loss=1.0)
        time.sleep(0.1)
    assert wait_for(lambda: reporter.sent_batches >= 2)
    assert told == ["the job is stopped; it takes no more reports"]
    reporter.close(timeout=1)


@pytest.mark.parametrize("body", [b"", b"<html>Unauthorized</html>", b'{"error": "x"}'])
def test_a_refusal_that_does_not_say_stop_leaves_the_training_alone(start_report_server, body):
    """A proxy's 401 page, say: only the platform's own words stop a run."""
    server = start_report_server(status=401, body=body)
    told = []
    reporter = Reporter(server.url, "t", 1, "w", interval=0.05, on_revoked=told.append)
    reporter.metric(step=1, loss=1.0)
    assert wait_for(lambda: reporter.sent_batches == 1)
    assert told == [] and reporter.revoked == ""
    reporter.close(timeout=1)


def test_resource_samples_carry_cpu_memory_and_network_figures():
    samples = []
    sampler = ResourceSampler(lambda **s: samples.append(s), interval=0.05).start()
    time.sleep(0.3)
    sampler.stop()
    assert len(samples) >= 2
    assert samples[-1]["memory_bytes"] > 10 * 2**20
    assert samples[-1]["net_rx_bytes"] >= 0 and samples[-1]["cpu_percent"] >= 0


def test_it_reads_mlu_figures_from_cnmon_output():
    text = """
    Card 0 ...
    Utilization
        MLU Average              : 37 %
    Physical Memory Usage
        Total                    : 24576 MiB
        Used                     : 1024 MiB
        Free                     : 23552 MiB
    """
    assert parse_cnmon(text) == {"device_util": 37.0, "device_memory_bytes": 1024 * 2**20}


def test_the_last_flush_delivers_when_the_platform_is_back_before_the_deadline(
    start_report_server,
):
    """After long failures the backoff is long; the flush at exit must not sleep through
    its deadline but try again until then (issue 12, item 5)."""
    import threading

    server = start_report_server(status=503)
    reporter = Reporter(server.url, "t", 1, "w", interval=0.05, backoff_base=2.0, backoff_max=60)
    reporter.metric(step=1, loss=1.0)
    time.sleep(0.5)  # refused with a 503 at least once: the next wait is long

    def come_back():
        server.status = 200

    threading.Timer(1.5, come_back).start()
    started = time.monotonic()
    assert reporter.close(timeout=4) is True
    assert time.monotonic() - started < 4.5
    assert [m["step"] for m in server.metrics] == [1]
