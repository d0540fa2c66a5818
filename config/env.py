"""Typed readers for environment variables.

Settings come from the environment only. Each reader refuses a malformed value
with ImproperlyConfigured at start-up, naming the variable, rather than letting
a typo surface later as a confusing runtime error. Secrets may come from a file
named by ``NAME_FILE`` (Docker and Kubernetes secrets are mounted as files).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        """The value of NAME, or the contents of the file named by NAME_FILE."""
        file_name = self.environ.get(f"{name}_FILE")
        if file_name:
            if name in self.environ:
                raise ImproperlyConfigured(f"Set either {name} or {name}_FILE, not both.")
            try:
                return Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {exc}") from exc
        return self.environ.get(name)

    def str(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}.") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
        return number

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default)
        if value not in choices:
            raise ImproperlyConfigured(
                f"{name} must be one of {', '.join(choices)}, not {value!r}."
            )
        return value

    def path(self, name: str, default: Path) -> Path:
        value = self.raw(name)
        if value is None:
            return default
        if not value.strip():
            raise ImproperlyConfigured(f"{name} must not be empty.")
        return Path(value).expanduser().resolve()


#: What the data root holds for the platform itself or for one project each.
PLATFORM_NAMES = (
    "jobs",
    "logs",
    "broker",
    "cache",
    "staticfiles",
    "uploads",
    "models",
    "datasets",
    "repos",
    "secret_key",
    "jingtiao.sqlite3",
    "celerybeat-schedule",
)


def shared_data_dirs(values: list[str]) -> list[str]:
    """JINGTIAO_SHARED_DATA_DIRS: relative folders of the data root, none of them the
    platform's own or a project's, so sharing one can never expose those."""
    found = []
    for value in values:
        path = Path(value)
        parts = path.parts
        if path.is_absolute() or not parts or ".." in parts or parts[0] in PLATFORM_NAMES:
            raise ImproperlyConfigured(
                f"JINGTIAO_SHARED_DATA_DIRS: {value!r} must be a folder relative to the data "
                f"root, outside {', '.join(PLATFORM_NAMES)}."
            )
        found.append(path.as_posix().rstrip("/"))
    return found


def embedded_secret_key(data_root: Path) -> str:
    """A random key kept under the data root, so an embedded run needs no set-up.

    Production sets SECRET_KEY (or SECRET_KEY_FILE); this only spares a newcomer
    from inventing one, without ever shipping a key that is the same everywhere.
    """
    import secrets

    key_file = data_root / "secret_key"
    try:
        return key_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    data_root.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


#: A Kubernetes object name that must be a DNS label (RFC 1123): a LocalQueue's, say.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def dns_label(name: str, value: str) -> str:
    if not DNS_LABEL.match(value):
        raise ImproperlyConfigured(
            f"{name} must be a Kubernetes name (lower-case letters, digits and '-', at most "
            f"63), not {value!r}."
        )
    return value
