"""Turn the training loop's log events into log lines and reported metrics.

Shared by the transformers-based algorithms (through a TrainerCallback) and by the
text-to-image loop, so both report the same fields.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from trainer.reporting import METRIC_FIELDS

log = logging.getLogger("jingtiao.train")

#: What a log line says of a record, in the reports' order (trainer/reporting.py).
LOGGED = tuple(key for key in METRIC_FIELDS if key not in ("step", "epoch", "time"))

# How the libraries name the losses of the validation and test sets.
EVAL_KEYS = {
    "eval_validation_loss": "eval_loss",
    "eval_test_loss": "test_loss",
    "eval_loss": "eval_loss",
    "test_loss": "test_loss",
}


class ProgressTracker:
    def __init__(self, reporter: Any, *, report: bool = True) -> None:
        self.reporter = reporter
        self.report = report
        self.started = time.monotonic()
        self._last_time = self.started
        self._last_tokens = 0
        self._first_step = 0
        self.history: list[dict[str, Any]] = []

    def started_from(self, step: int, tokens_seen: int | None = None) -> None:
        """A run resumed from a checkpoint: its pace and its throughput count from there,
        not from step 0 (the steps and tokens before it were another run's)."""
        self._first_step = step
        self._last_tokens = tokens_seen or 0
        self.started = self._last_time = time.monotonic()

    def log(
        self,
        *,
        step: int,
        max_steps: int,
        epoch: float | None,
        values: dict[str, Any],
        tokens_seen: int | None = None,
    ) -> dict[str, Any]:
        now = time.monotonic()
        record: dict[str, Any] = {"step": step, "epoch": round(epoch, 4) if epoch else epoch}
        for key, value in values.items():
            if not isinstance(value, (int, float)):
                continue
            record[EVAL_KEYS.get(key, key)] = value
        if tokens_seen and now > self._last_time and tokens_seen > self._last_tokens:
            record["tokens_per_second"] = round(
                (tokens_seen - self._last_tokens) / (now - self._last_time), 2
            )
            self._last_tokens, self._last_time = tokens_seen, now
        if max_steps > 0:
            progress = min(1.0, step / max_steps)
            record["progress"] = round(progress, 4)
            done = step - self._first_step
            if done > 0:
                left = max(max_steps - step, 0)
                record["eta_seconds"] = round((now - self.started) * left / done, 1)
        self.history.append(record)
        if self.report:
            self.reporter.metric(**record, time=time.time())
            log.info(format_record(record))
        return record


def format_record(record: dict[str, Any]) -> str:
    shown = [f"step {record['step']}"]
    for key in LOGGED:
        if key in record:
            value = record[key]
            shown.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    # Algorithm-specific figures worth a glance (DPO accuracies, GRPO rewards).
    extra = sorted(k for k in record if "reward" in k or "accuracy" in k)
    shown += [f"{k} {record[k]:.4g}" for k in extra if isinstance(record[k], float)]
    return ", ".join(shown)
