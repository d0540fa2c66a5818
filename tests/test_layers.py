"""The layers of docs/development.md, held: every import points down, never up.

Each module of the platform belongs to one layer, by the longest prefix of its name
in LAYERS, and may import its own layer and those below it. The pages reach the
scheduler only through `scheduler.public`. The trainer and the planner are libraries:
they import nothing of the platform and no Django, and every layer may use them.
Imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "accounts", "api", "finetune", "scheduler", "trainer", "webhooks")

# Pure code with no I/O: the trainer runs in a pod; the planner is a function of
# frozen values (scheduler/planner.py).
LIBRARIES = ("trainer", "scheduler.planner", "scheduler.planning")

# Lowest first.
LAYERS: dict[str, tuple[str, ...]] = {
    "settings": ("config.env", "config.settings", "config.celery", "config.failpoints"),
    "accounts": ("accounts",),
    "resources": ("scheduler.models", "scheduler.capacity"),
    "jobs": ("finetune",),
    "scheduler": ("scheduler",),
    # told of what happens to jobs (finetune.signals), it tells other systems
    "notifications": ("webhooks",),
    "pages": (
        "config",
        # the API is another face of the same services, beside the pages
        "api",
        "accounts.admin",
        "accounts.management",
        "accounts.token_views",
        "accounts.context_processors",
        "accounts.forms",
        "accounts.redirects",
        "accounts.urls",
        "accounts.views",
        "finetune.admin",
        "finetune.filters",
        "finetune.forms",
        "finetune.management",
        "finetune.monitoring",
        "finetune.preview",
        "finetune.templatetags",
        "finetune.urls",
        "finetune.views",
        "scheduler.admin",
        "webhooks.admin",
        "webhooks.forms",
        "webhooks.urls",
        "webhooks.views",
        "webhooks.templatetags",
    ),
}
ORDER = list(LAYERS)
SCHEDULER_FACE = "scheduler.public"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                found[name.removesuffix(".__init__")] = path
    return found


def layer_of(module: str) -> str:
    if any(_within(module, library) for library in LIBRARIES):
        return "library"
    best, length = "", -1
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if _within(module, prefix) and len(prefix) > length:
                best, length = layer, len(prefix)
    assert best, f"{module} belongs to no layer: add it to LAYERS"
    return best


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported name) for every import in ``source``, relative ones resolved;
    ``from scheduler import tasks`` gives scheduler.tasks, which may be a module."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module an imported name lives in: finetune.models.Job is finetune.models."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def wrong_imports(module: str, source: str, modules: dict[str, Path], is_package=False):
    mine = layer_of(module)
    for line, name in imports_of(source, module, is_package):
        top = name.split(".")[0]
        if mine == "library":
            if top == "django" or (top in PACKAGES and layer_of(name) != "library"):
                yield line, f"the library {module} imports {name}"
            continue
        if top not in PACKAGES:
            continue
        target = _resolve(name, modules)
        theirs = layer_of(target)
        if theirs == "library":
            continue
        if ORDER.index(theirs) > ORDER.index(mine):
            yield line, f"{module} ({mine}) imports {target} ({theirs})"
        elif mine == "pages" and theirs == "scheduler" and not _within(target, SCHEDULER_FACE):
            yield line, f"{module} (pages) imports {target}, not through {SCHEDULER_FACE}"


def test_imports_point_down_the_layers():
    modules = _modules()
    wrong = {
        f"{path.relative_to(ROOT)}:{line} {why}"
        for module, path in modules.items()
        for line, why in wrong_imports(
            module, path.read_text(), modules, is_package=path.name == "__init__.py"
        )
    }
    assert sorted(wrong) == []


@pytest.mark.parametrize(
    ("module", "source", "caught"),
    [
        ("finetune.services.jobs", "from finetune.views.jobs import JobListView", True),
        ("finetune.states", "def f():\n    from scheduler import tasks\n", True),
        ("scheduler.models", "from finetune.models import Job", True),
        ("finetune.views.logs", "from scheduler.executors import get_executor", True),
        ("trainer.runner", "import django.conf", True),
        ("scheduler.planning.engine", "from scheduler.models import Node", True),
        ("finetune.views.logs", "from scheduler.public import job_logs", False),
        ("scheduler.tasks", "from finetune.models import Job", False),
        ("finetune.texts", "from scheduler.planner import Words", False),
        ("scheduler.admission", "from . import planner", False),
        ("scheduler.executors.local", "from ..launching import preview", False),
        ("finetune.models.jobs", "from ..views import jobs", True),
    ],
)
def test_the_check_tells_an_upward_import_from_a_downward_one(module, source, caught):
    assert bool(list(wrong_imports(module, source, _modules()))) is caught
