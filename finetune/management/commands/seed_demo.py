"""A demo project a newcomer can train in at once, built entirely on this machine.

Idempotent: a second run changes nothing that exists (passwords included) and
only adds what is missing. Tiny models and data sets are generated locally;
nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass

import psutil
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import Access, Membership, Project
from finetune import access, storage
from finetune.catalog_sync import sync_catalog
from finetune.models import Dataset, ModelRepo, PretrainedModel, ProjectDefaults, Scenario
from finetune.services.validation import validate_now
from finetune.storage import data_root, resolve
from scheduler.models import MIB, DeviceType, Node, NodeSpec

DEMO_PROJECT = "demo"
OTHER_PROJECT = "research"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str | None  # role in the demo project; None: not a member
    superuser: bool = False


USERS = [
    DemoUser("admin", "jingtiao-admin", Membership.Role.ADMIN, superuser=True),
    DemoUser("alice", "jingtiao-alice", Membership.Role.MEMBER),
    DemoUser("bob", "jingtiao-bob", Membership.Role.MEMBER),
    DemoUser("charlie", "jingtiao-charlie", None),
]

SPECS = [
    # name, CPU millicores, memory MiB, device type, devices, and its extras
    ("cpu-2c4g", 2000, 4096, DeviceType.NONE, 0, {}),
    ("cpu-1c2g", 1000, 2048, DeviceType.NONE, 0, {}),
    # two training processes on the CPUs: a distributed run on one machine
    ("cpu-2c4g-2p", 2000, 4096, DeviceType.NONE, 0, {"cpu_processes": 2}),
    (
        "mlu370-x1",
        16000,
        65536,
        DeviceType.MLU,
        1,
        {"device_model": "MLU370-X8", "device_memory_gib": 48},
    ),
    (
        "mlu370-x8",
        128000,
        524288,
        DeviceType.MLU,
        8,
        {"device_model": "MLU370-X8", "device_memory_gib": 48},
    ),
    ("gpu-x1", 16000, 65536, DeviceType.GPU, 1, {"device_memory_gib": 80}),
]

# (data set name, scenario, sample kind, rows, seed)
DATASETS = [
    ("pretrain-train", "llm/pretrain", "pretrain", 64, 0),
    ("pretrain-validation", "llm/pretrain", "pretrain", 16, 1),
    ("sft-chat-train", "llm/sft", "sft_messages", 64, 0),
    ("sft-chat-validation", "llm/sft", "sft_messages", 16, 1),
    ("sft-chat-test", "llm/sft", "sft_messages", 16, 2),
    ("sft-alpaca-train", "llm/sft", "sft_alpaca", 64, 0),
    ("preference-train", "llm/reward_model", "preference", 64, 0),
    ("preference-validation", "llm/reward_model", "preference", 16, 1),
    ("dpo-train", "llm/rl", "preference", 64, 0),
    ("grpo-prompts", "llm/rl", "prompts", 32, 0),
    ("t2i-train", "t2i/finetune", "t2i", 16, 0),
    ("t2i-validation", "t2i/finetune", "t2i", 4, 1),
]

REPOS = [
    ("pretrain-models", "llm/pretrain"),
    ("sft-models", "llm/sft"),
    ("reward-models", "llm/reward_model"),
    ("rl-models", "llm/rl"),
    ("t2i-models", "t2i/finetune"),
]


class Command(BaseCommand):
    help = "Create the demo project, users, node specs, this machine's node, tiny models and data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--quiet-passwords", action="store_true", help="Do not print the demo logins."
        )

    def handle(self, *args, **options) -> None:
        sync_catalog()
        with transaction.atomic():
            project, other = self._projects()
            users = self._users(project, other)
            self._specs()
            self._node()
        models = self._models()
        with transaction.atomic():
            self._pretrained(models)
            self._datasets(project, users["alice"])
            self._repos(project, users["alice"])
            self._defaults(project)
        self.stdout.write(self.style.SUCCESS(f"demo ready under {data_root()}"))
        if not options["quiet_passwords"]:
            self.stdout.write("logins (user / password / role in project 'demo'):")
            for user in USERS:
                role = user.role or f"member of '{OTHER_PROJECT}' only"
                self.stdout.write(f"  {user.username:8} {user.password:18} {role}")

    def _defaults(self, project: Project) -> None:
        """What a job made through the OpenAI-compatible API runs on here: the small CPU
        spec, for an hour (docs/api.md)."""
        ProjectDefaults.objects.get_or_create(
            project=project,
            defaults={"node_spec": NodeSpec.objects.get(name="cpu-1c2g"), "duration_hours": 1},
        )

    def _projects(self) -> tuple[Project, Project]:
        project, _created = Project.objects.get_or_create(
            name=DEMO_PROJECT,
            defaults={"description": "Demo project created by seed_demo."},
        )
        other, _created = Project.objects.get_or_create(
            name=OTHER_PROJECT,
            defaults={"description": "A second project; its members do not see the demo's jobs."},
        )
        return project, other

    def _users(self, project: Project, other: Project) -> dict:
        User = get_user_model()
        users = {}
        for demo in USERS:
            user = User.objects.filter(username=demo.username).first()
            if user is None:
                user = User.objects.create_user(
                    demo.username,
                    email=f"{demo.username}@demo.jingtiao.local",
                    password=demo.password,
                    is_staff=demo.superuser,
                    is_superuser=demo.superuser,
                )
            if demo.role is not None:
                Membership.objects.get_or_create(
                    project=project, user=user, defaults={"role": demo.role}
                )
            else:
                Membership.objects.get_or_create(project=other, user=user)
            users[demo.username] = user
        return users

    def _specs(self) -> None:
        for order, (name, cpu, memory, device_type, devices, extras) in enumerate(SPECS):
            NodeSpec.objects.get_or_create(
                name=name,
                defaults={
                    "cpu_millis": cpu,
                    "memory_mib": memory,
                    "device_type": device_type,
                    "device_count": devices,
                    "sort_order": order,
                    **extras,
                },
            )

    def _node(self) -> None:
        """This machine, as the local executor sees it."""
        Node.objects.update_or_create(
            name=socket.gethostname() or "localhost",
            defaults={
                "cpu_millis": (os.cpu_count() or 1) * 1000,
                "memory_mib": psutil.virtual_memory().total // MIB,
                "device_type": DeviceType.NONE,
                "device_count": 0,
                "labels": {"jingtiao.io/executor": "local"},
                "schedulable": True,
                "last_seen": timezone.now(),
            },
        )

    def _models(self) -> dict[str, str]:
        # Heavy imports only here: the rest of the platform does not need torch.
        from trainer.tiny import build_tiny_llm, build_tiny_t2i

        locations = {"tiny-llama": "models/tiny-llama", "tiny-t2i": "models/tiny-t2i"}
        builders = {"tiny-llama": build_tiny_llm, "tiny-t2i": build_tiny_t2i}
        for name, location in locations.items():
            folder = resolve(location)
            if not (folder / "config.json").exists() and not (folder / "model_index.json").exists():
                self.stdout.write(f"building {name} in {folder}")
                builders[name](folder)
        return locations

    def _pretrained(self, locations: dict[str, str]) -> None:
        rows = [
            ("tiny-llama", "llm", "llama", "A tiny Llama-style model built locally, for demos."),
            ("tiny-t2i", "t2i", "stable-diffusion", "A tiny text-to-image pipeline built locally."),
        ]
        for name, task_type, family, description in rows:
            PretrainedModel.objects.get_or_create(
                name=name,
                defaults={
                    "task_type": task_type,
                    "family": family,
                    "location": locations[name],
                    "description": description,
                },
            )

    def _datasets(self, project: Project, creator) -> None:
        from trainer.samples import write_sample_dataset

        scenarios = {scenario.code: scenario for scenario in Scenario.objects.all()}
        for name, scenario_code, kind, rows, seed in DATASETS:
            location = f"{storage.project_area(project.pk, storage.DATASETS)}/{name}"
            existing = Dataset.objects.filter(project=project, name=name).first()
            if existing is not None:
                _into_area(existing, f"{storage.DATASETS}/{project.name}/{name}", location)
                continue
            folder = resolve(location)
            target = folder if kind == "t2i" else folder / "data.jsonl"
            write_sample_dataset(kind, target, rows=rows, seed=seed)
            dataset = Dataset.objects.create(
                project=project,
                creator=creator,
                name=name,
                scenario=scenarios[scenario_code],
                format=kind,
                location=location,
            )
            access.share_new(dataset, Access.READ_WRITE)
            validate_now(dataset.pk)

    def _repos(self, project: Project, creator) -> None:
        scenarios = {scenario.code: scenario for scenario in Scenario.objects.all()}
        for name, scenario_code in REPOS:
            location = f"{storage.project_area(project.pk, storage.REPOS)}/{name}"
            existing = ModelRepo.objects.filter(project=project, name=name).first()
            if existing is not None:
                _into_area(existing, f"{storage.REPOS}/{project.name}/{name}", location)
                continue
            resolve(location).mkdir(parents=True, exist_ok=True)
            repo = ModelRepo.objects.create(
                project=project,
                creator=creator,
                name=name,
                scenario=scenarios[scenario_code],
                location=location,
            )
            access.share_new(repo, Access.READ_WRITE)


def _into_area(row: Dataset | ModelRepo, legacy: str, location: str) -> None:
    """A demo row of the layout before project areas (`<kind>/<project name>/<name>`) is
    moved, files and versions with it, into the project's area, where jobs may use it."""
    if row.location != legacy:
        return
    old, new = resolve(legacy), resolve(location)
    if old.exists() and not new.exists():
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(old, new)
    type(row).objects.filter(pk=row.pk).update(location=location)
    if isinstance(row, ModelRepo):
        for version in row.versions.filter(location__startswith=f"{legacy}/"):
            version.location = location + version.location[len(legacy) :]
            version.save(update_fields=["location"])
