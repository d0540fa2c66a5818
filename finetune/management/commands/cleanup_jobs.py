"""F11: bulk clean-up of finished jobs.

Deletes jobs that ended (error, stopped, expired, succeeded) before a given
age, optionally only some statuses and projects, in batches: each batch first
removes the jobs' folders, then their rows (events, node-spec choices and
permission grants go with them by cascade). Folders left by jobs deleted from the
pages (whose teardown did not remove them) go too, once no worker of theirs lives.
Interrupted at any point, a rerun finds what is left and finishes it; a folder is
never left without its row being deleted next. Running and queued jobs are never
touched.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import Project
from finetune.models import Job
from finetune.models.jobs import TERMINAL_STATUSES
from finetune.storage import jobs_root, remove_job_dir


class Command(BaseCommand):
    help = "Delete finished jobs older than an age, with their folders and grants."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=30,
            metavar="DAYS",
            help="Only jobs that finished more than DAYS ago (default 30; 0 for all).",
        )
        parser.add_argument(
            "--status",
            action="append",
            default=[],
            metavar="STATUS",
            help=f"Only jobs in this status; repeatable. One of: {', '.join(TERMINAL_STATUSES)}.",
        )
        parser.add_argument(
            "--project",
            action="append",
            default=[],
            metavar="NAME",
            help="Only jobs of this project; repeatable.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=settings.JINGTIAO_CLEANUP_BATCH, metavar="N"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; change nothing."
        )

    def handle(self, *args, **options) -> None:
        jobs = self._select(options)
        dry_run: bool = options["dry_run"]
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")

        if dry_run:
            counts = Counter(jobs.values_list("status", flat=True))
            self._report(counts, folders=None, dry_run=True)
            return

        counts: Counter[str] = Counter()
        folders = 0
        while True:
            batch = list(jobs.order_by("pk").values_list("pk", "status")[:batch_size])
            if not batch:
                break
            ids = [pk for pk, _status in batch]
            folders += sum(remove_job_dir(pk) for pk in ids)
            with transaction.atomic():
                Job.objects.filter(pk__in=ids, status__in=TERMINAL_STATUSES).delete()
            counts.update(status for _pk, status in batch)
            self.stdout.write(f"deleted {sum(counts.values())} jobs so far")
        folders += self._remove_orphan_folders()
        self._report(counts, folders=folders, dry_run=False)

    def _remove_orphan_folders(self) -> int:
        """Folders of jobs deleted from the pages whose teardown never came round to
        them (a broker that was down): removed once no worker of theirs lives."""
        from scheduler.public import ExecutorError, managed_job_ids

        root = jobs_root()
        if not root.is_dir():
            return 0
        ids = {int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()}
        known = set(Job.objects.filter(pk__in=ids).values_list("pk", flat=True))
        try:
            live = managed_job_ids()
        except ExecutorError as exc:
            self.stderr.write(f"folders of deleted jobs kept: the executor did not answer ({exc})")
            return 0
        return sum(remove_job_dir(job_id) for job_id in sorted(ids - known - set(live)))

    def _select(self, options):
        statuses = options["status"] or list(TERMINAL_STATUSES)
        wrong = [status for status in statuses if status not in TERMINAL_STATUSES]
        if wrong:
            raise CommandError(
                f"Cannot clean up jobs in status {', '.join(wrong)}: only finished jobs "
                f"({', '.join(TERMINAL_STATUSES)}) may be deleted."
            )
        if options["older_than"] < 0:
            raise CommandError("--older-than must not be negative.")
        cutoff = timezone.now() - timedelta(days=options["older_than"])
        jobs = Job.objects.filter(status__in=statuses, finished_at__lte=cutoff)
        if options["project"]:
            names = set(options["project"])
            found = set(Project.objects.filter(name__in=names).values_list("name", flat=True))
            if names - found:
                raise CommandError(f"No such project: {', '.join(sorted(names - found))}.")
            jobs = jobs.filter(project__name__in=names)
        return jobs

    def _report(self, counts: Counter, *, folders: int | None, dry_run: bool) -> None:
        verb = "would delete" if dry_run else "deleted"
        total = sum(counts.values())
        self.stdout.write(self.style.SUCCESS(f"{verb} {total} jobs"))
        for status in sorted(counts):
            self.stdout.write(f"  {status}: {counts[status]}")
        if folders is not None:
            self.stdout.write(f"  job folders removed: {folders} (under {jobs_root()})")
