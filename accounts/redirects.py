"""Where a page may send the user back to: a path of this site, never a name to reverse
or another host (an open redirect)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def local_path(request: HttpRequest, target: str) -> str | None:
    """`target` if it is a path on this site, else None."""
    if not target.startswith("/") or target.startswith("//") or "\x00" in target:
        return None
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return None
    return target
