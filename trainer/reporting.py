"""Send training metrics and resource samples to the platform, in batches, from a thread.

Protocol: POST ``url`` with ``Authorization: Bearer <token>`` and the JSON body
``{"job_id", "worker", "seq", "metrics": [...], "resources": [...]}``. ``seq`` grows by
one per batch and per worker; a batch that was not acknowledged is re-sent with the
same seq, so the platform can drop duplicates. Nothing here ever raises into the
training: the platform being away costs at most some samples.

A refusal whose JSON body holds ``"stop": true`` (the job has ended, was deleted,
or was launched again with a new token) means this run is over: ``on_revoked``
is called once with the platform's words, and the runner stops the training. So
a trainer left behind by a lost teardown (the broker down when a job is stopped,
a worker killed mid-launch) ends within one report interval.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger("jingtiao.reporting")

METRIC_FIELDS = (
    "step",
    "epoch",
    "loss",
    "eval_loss",
    "test_loss",
    "learning_rate",
    "tokens_per_second",
    "progress",
    "eta_seconds",
    "time",
)
RESOURCE_FIELDS = (
    "worker",
    "time",
    "cpu_percent",
    "memory_bytes",
    "device_util",
    "device_memory_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
)


class Reporter:
    """Buffered, retrying reporter; ``metric`` and ``resource`` only append to a buffer."""

    def __init__(
        self,
        url: str,
        token: str,
        job_id: int,
        worker: str,
        *,
        interval: float = 5.0,
        max_batch: int = 500,
        max_buffer: int = 20_000,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        on_revoked: Callable[[str], None] | None = None,
    ) -> None:
        self.url, self.token, self.job_id, self.worker = url, token, job_id, worker
        self.interval, self.max_batch, self.max_buffer = interval, max_batch, max_buffer
        self.timeout, self.backoff_base, self.backoff_max = timeout, backoff_base, backoff_max
        self.on_revoked = on_revoked
        self.revoked = ""  # the platform's words, once it said this run is over
        self.seq = 0
        self.sent_batches = 0
        self.dropped = 0
        self._metrics: collections.deque[dict] = collections.deque()
        self._resources: collections.deque[dict] = collections.deque()
        self._pending: dict[str, Any] | None = None  # built batch awaiting acknowledgement
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="jingtiao-reporter", daemon=True)
        self._thread.start()

    # Producers -----------------------------------------------------------------------

    def metric(self, **values: Any) -> None:
        self._append(self._metrics, _pick(values, METRIC_FIELDS))

    def resource(self, **values: Any) -> None:
        self._append(self._resources, _pick({"worker": self.worker, **values}, RESOURCE_FIELDS))

    def _append(self, queue: collections.deque, item: dict) -> None:
        try:
            item.setdefault("time", time.time())
            with self._lock:
                queue.append(item)
                self._trim()
                due = len(self._metrics) + len(self._resources) >= self.max_batch
            if due:
                self._wake.set()
        except Exception:
            log.debug("reporting: could not buffer an item", exc_info=True)

    def _trim(self) -> None:
        # Resource samples are the cheapest to lose: a gap in a chart, not in the loss curve.
        while len(self._metrics) + len(self._resources) > self.max_buffer:
            (self._resources or self._metrics).popleft()
            self.dropped += 1

    # Sender thread ---------------------------------------------------------------------

    def _next_batch(self) -> dict[str, Any] | None:
        with self._lock:
            if self._pending is None and (self._metrics or self._resources):
                take = min(len(self._metrics), self.max_batch)
                metrics = [self._metrics.popleft() for _ in range(take)]
                take = min(len(self._resources), self.max_batch - len(metrics))
                resources = [self._resources.popleft() for _ in range(take)]
                self.seq += 1
                self._pending = {
                    "job_id": self.job_id,
                    "worker": self.worker,
                    "seq": self.seq,
                    "metrics": metrics,
                    "resources": resources,
                }
            return self._pending

    def _post(self, batch: dict[str, Any], timeout: float) -> bool:
        """True when the batch is done with (accepted, or refused for good)."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(batch).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return True
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 410):
                self._check_revoked(exc)
            if 400 <= exc.code < 500 and exc.code not in (408, 425, 429):
                # Re-sending what the platform refuses would only block what follows.
                log.warning(
                    "reporting: platform refused batch %s (HTTP %s)", batch["seq"], exc.code
                )
                return True
            log.debug("reporting: HTTP %s, will retry", exc.code)
        except (OSError, ValueError) as exc:
            log.debug("reporting: %s, will retry", exc)
        return False

    def _check_revoked(self, refusal: urllib.error.HTTPError) -> None:
        try:
            body = json.loads(refusal.read(65536) or b"{}")
        except (OSError, ValueError):
            return
        if not isinstance(body, dict) or body.get("stop") is not True or self.revoked:
            return
        self.revoked = str(body.get("error") or f"HTTP {refusal.code}")
        log.warning("reporting: the platform says this run is over (%s): stopping", self.revoked)
        if self.on_revoked is not None:
            try:
                self.on_revoked(self.revoked)
            except Exception:
                log.exception("reporting: on_revoked failed")

    def _run(self) -> None:
        failures = flush_failures = 0
        while True:
            stopping = self._stop.is_set()
            left = self._deadline - time.monotonic() if self._deadline is not None else None
            if stopping and left is not None and left <= 0:
                return
            batch = self._next_batch()
            if batch is None:
                if stopping:
                    return
                self._wake.wait(self.interval)
                self._wake.clear()
                continue
            timeout = self.timeout if left is None else max(0.1, min(self.timeout, left))
            try:
                done = self._post(batch, timeout)
            except Exception:
                log.debug("reporting: unexpected error", exc_info=True)
                done = False
            if done:
                with self._lock:
                    self._pending = None
                self.sent_batches += 1
                failures = 0
                continue
            failures += 1
            if stopping:
                # The last flush before exit: short waits from the first, whatever failed
                # before, and one more try just before the deadline rather than a sleep
                # through it (the platform may be back by then).
                flush_failures += 1
                left = self._deadline - time.monotonic() if self._deadline is not None else 0.0
                delay = min(self.backoff_base * 2 ** (flush_failures - 1), 1.0)
                time.sleep(max(0.0, min(delay, left - 0.1)))
                continue
            # Full jitter keeps many workers from hammering a recovering platform in step.
            delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**failures))
            self._stop.wait(delay)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush what is buffered for up to ``timeout`` seconds; True when all was sent."""
        try:
            self._deadline = time.monotonic() + timeout
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout + 1.0)
            with self._lock:
                left = len(self._metrics) + len(self._resources) + (1 if self._pending else 0)
            if left:
                log.warning("reporting: %s item(s) not delivered before exit", left)
            return left == 0
        except Exception:
            return False

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pick(values: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: values[name] for name in fields if values.get(name) is not None}


class NullReporter:
    """Stands in when the spec has no report address."""

    def metric(self, **values: Any) -> None:
        pass

    def resource(self, **values: Any) -> None:
        pass

    def close(self, timeout: float = 5.0) -> bool:
        return True
