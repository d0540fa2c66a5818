"""Run Jingtiao on one machine: its own broker, the worker, beat and the web server,
each started again if it dies (config/embedded.py). `bin/demo` ends with this."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config import embedded


class Command(BaseCommand):
    help = "Run the embedded broker, the Celery worker, beat and the web server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--worker-concurrency", type=int, default=2)
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, host: str, port: int, **options) -> None:
        try:
            watched = embedded.children(
                host, port, options["worker_concurrency"], options["web_workers"]
            )
            embedded.Supervisor(watched).run()
        except embedded.EmbeddedError as exc:
            raise CommandError(str(exc)) from exc
