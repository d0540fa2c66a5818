"""Where a webhook may send: not into the platform's own network (SSRF).

A webhook's URL is typed by a project administrator, not by the operator, and the
worker that POSTs to it sits inside the cluster, next to the database, the broker,
the Kubernetes API and the cloud's metadata service. So a URL is accepted only if
it is http(s) and every address its host resolves to is a public one, unless the
operator turned JINGTIAO_WEBHOOK_ALLOW_PRIVATE on (a platform whose receivers are
on its own network). It is checked when it is saved and again before each attempt,
and the attempt connects to the very address that was checked (webhooks/sending.py),
so a name that resolves elsewhere between the check and the connection (DNS
rebinding) cannot lead the request inside.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

DEFAULT_PORTS = {"http": 80, "https": 443}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked URL: whom to say we talk to (host, for the Host header and TLS) and
    the addresses to connect to instead of resolving the host again."""

    scheme: str
    host: str
    port: int
    path: str  # with its query
    addresses: tuple[str, ...]


IPV6_TUNNELS = tuple(
    ipaddress.IPv6Network(network) for network in ("2002::/16", "2001::/32", "fec0::/10")
)


def forbidden(address: Address) -> bool:
    """An address of a private, local or special network, not one on the internet."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        elif any(address in network for network in IPV6_TUNNELS):
            # 6to4 (2002:7f00:1::) and Teredo carry an IPv4 address a relay may reach,
            # and site-local fec0::/10 is private (older Pythons call it global)
            return True
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        # e.g. the carrier-grade NAT range 100.64.0.0/10: private in all but name
        or not address.is_global
    )


def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in the order the resolver gives them; none if unknown."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = sockaddr[0].split("%", 1)[0]  # an IPv6 scope (fe80::1%eth0) aside
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_url(url: str, *, field: str | None = None) -> Target:
    """The URL's target, checked; else ValidationError saying what is wrong with it
    (on `field` where one is named, for a form)."""

    def refuse(message: str, code: str, **params) -> ValidationError:
        error = ValidationError(message, code=code, params=params)
        return ValidationError({field: error}) if field else error

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise refuse(_("Only http:// and https:// addresses can receive webhooks."), "scheme")
    if parts.username is not None or parts.password is not None:
        raise refuse(
            _(
                "Put no user name or password in the address: the signature tells the "
                "receiver the message is ours."
            ),
            "credentials",
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise refuse(_("The port of this address is not a number."), "port") from None
    host = parts.hostname or ""
    if not host:
        raise refuse(_("This address names no host."), "host")
    try:
        # a name in another script as DNS and the Host header write it (xn--...)
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise refuse(_("The host %(host)s is not a valid name."), "host", host=host) from None
    addresses = resolve(host, port)
    if not addresses:
        raise refuse(_("The host %(host)s could not be found (DNS)."), "unresolved", host=host)
    if not settings.JINGTIAO_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if forbidden(ipaddress.ip_address(address)):
                raise refuse(
                    _(
                        "This address is on a private network or this machine "
                        "(%(address)s): webhooks are only sent to public addresses. An "
                        "operator can allow private ones (JINGTIAO_WEBHOOK_ALLOW_PRIVATE)."
                    ),
                    "private",
                    address=address,
                )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port, path, tuple(addresses))
