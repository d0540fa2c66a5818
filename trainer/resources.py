"""Periodic samples of this worker's CPU, memory, device and network use."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("jingtiao.resources")


def _nvml_reader(index: int) -> Callable[[], dict[str, Any]] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None

    def read() -> dict[str, Any]:
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {"device_util": float(util.gpu), "device_memory_bytes": int(memory.used)}

    return read


_CNMON_UTIL = re.compile(r"MLU Average\s*:\s*(\d+(?:\.\d+)?)\s*%")
_CNMON_USED = re.compile(r"Physical Memory Usage.*?Used\s*:\s*(\d+)\s*MiB", re.S)


def parse_cnmon(text: str) -> dict[str, Any]:
    """Utilisation and memory from ``cnmon info -u -m`` output (fields it lacks are left out)."""
    result: dict[str, Any] = {}
    if match := _CNMON_UTIL.search(text):
        result["device_util"] = float(match.group(1))
    if match := _CNMON_USED.search(text):
        result["device_memory_bytes"] = int(match.group(1)) * 1024 * 1024
    return result


def _cnmon_reader(index: int) -> Callable[[], dict[str, Any]] | None:
    cnmon = shutil.which("cnmon")
    if not cnmon:
        return None

    def read() -> dict[str, Any]:
        out = subprocess.run(
            [cnmon, "info", "-c", str(index), "-u", "-m"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return parse_cnmon(out.stdout)

    return read


class ResourceSampler:
    """Samples every ``interval`` seconds into ``sink(**sample)`` from a daemon thread."""

    def __init__(
        self,
        sink: Callable[..., None],
        *,
        device_kind: str = "cpu",
        device_index: int = 0,
        interval: float = 15.0,
    ) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the measurement
        self._sink, self._interval = sink, interval
        self._device: Callable[[], dict[str, Any]] | None = None
        if device_kind == "cuda":
            self._device = _nvml_reader(device_index)
        elif device_kind == "mlu":
            self._device = _cnmon_reader(device_index)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jingtiao-resources", daemon=True)

    def sample(self) -> dict[str, Any]:
        net = self._psutil.net_io_counters()
        sample: dict[str, Any] = {
            "time": time.time(),
            "cpu_percent": self._process.cpu_percent(None),
            "memory_bytes": self._process.memory_info().rss,
            "net_rx_bytes": net.bytes_recv if net else None,
            "net_tx_bytes": net.bytes_sent if net else None,
        }
        if self._device:
            try:
                sample.update(self._device())
            except Exception:
                log.debug("device sample failed", exc_info=True)
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._sink(**self.sample())
            except Exception:
                log.debug("resource sample failed", exc_info=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sink(**self.sample())  # a last sample so short runs have at least one
        except Exception:
            log.debug("final resource sample failed", exc_info=True)
