"""``manage.py create_api_token USER --project NAME [--project …] [--name N] [--days D]``:
a personal API token for operators and scripts; the token is printed once."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import tokens
from accounts.models import Project


class Command(BaseCommand):
    help = "Create a personal API token for USER in the named projects and print it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--project",
            action="append",
            required=True,
            help="a project's name or id; repeat for several",
        )
        parser.add_argument("--name", default="command line")
        parser.add_argument("--days", type=int, help="expire after this many days")

    def handle(self, *args, username: str, project: list[str], name: str, days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        projects = []
        for wanted in project:
            found = Project.objects.filter(name=wanted).first()
            if found is None and wanted.isdigit():
                found = Project.objects.filter(pk=int(wanted)).first()
            if found is None:
                raise CommandError(f"No project {wanted!r}.")
            projects.append(found)
        expires = timezone.now() + timedelta(days=days) if days else None
        try:
            _token, key = tokens.issue(user, name=name, projects=projects, expires_at=expires)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(key)
