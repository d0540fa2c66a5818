"""One attempt at a message: signed per Standard Webhooks, POSTed to the checked address.

The body is the payload as compact JSON with sorted keys, so every attempt of a
message sends the same bytes whatever order the database keeps the keys in; those
bytes are what is signed. Each attempt is signed afresh with its own timestamp
(receivers refuse a timestamp more than a few minutes off), under the same message
id, so a receiver can drop a message it already took.

The connection goes to the address `addresses.check_url` found acceptable, not to
the host's name resolved again: the Host header, TLS's server name and the
certificate's check still use the name. Proxies from the environment are not used
(a proxy would resolve the name itself), nor are redirects followed (a redirect
could point inside): a 3xx answer is a failure the page shows.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.translation import gettext_noop
from standardwebhooks.webhooks import Webhook as Signer

from finetune.texts import Said, say
from webhooks.addresses import Target

USER_AGENT = "Jingtiao-Webhooks/1"
EXCERPT_BYTES = 1024


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    excerpt: str = ""
    error: Said | None = None
    duration_ms: int = 0


def body_of(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def headers_for(message_id: str, body: str, secrets: list[str], at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers: one signature per secret, space-separated (two
    while a rotated-out secret is still honoured)."""
    at = at.astimezone(UTC)  # the signer reads the time as UTC, whatever its zone says
    signatures = " ".join(Signer(secret).sign(message_id, at, body) for secret in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Talks to `host` at `address`: the connection cannot be sent elsewhere by DNS."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def _open(self) -> socket.socket:
        return socket.create_connection((self.address, self.port), self.timeout)

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, address, timeout)
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        # the certificate is checked against the name, as if we had resolved it
        self.sock = self.tls.wrap_socket(self._open(), server_hostname=self.host)


def post(target: Target, body: str, headers: dict[str, str], timeout: float) -> Outcome:
    """POST `body` to the first of the target's checked addresses that takes a connection;
    never raises for what the network or the receiver does."""
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    started = time.monotonic()
    error = say(gettext_noop("The address has no host to connect to."))
    for address in target.addresses:
        connection = kind(target.host, target.port, address, timeout)
        try:
            connection.connect()
        except OSError as exc:  # refused, unreachable, timed out: the next address may do
            error = _said(exc, timeout, address)
            connection.close()
            continue
        # Connected: the request may have reached the receiver, so another address would
        # only send it twice; what happens now is this attempt's outcome.
        try:
            connection.request("POST", target.path, body=body.encode(), headers=headers)
            response = connection.getresponse()
            excerpt = response.read(EXCERPT_BYTES).decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(False, None, "", _said(exc, timeout, address), _ms_since(started))
        finally:
            connection.close()
        status, elapsed = response.status, _ms_since(started)
        if 200 <= status < 300:
            return Outcome(True, status, excerpt, None, elapsed)
        if 300 <= status < 400:
            said = say(
                gettext_noop("Redirected to %(location)s: redirects are not followed."),
                location=response.getheader("location", ""),
            )
        else:
            said = say(gettext_noop("The receiver answered %(status)d."), status=status)
        return Outcome(False, status, excerpt, said, elapsed)
    return Outcome(False, None, "", error, _ms_since(started))


def _said(exc: BaseException, timeout: float, address: str) -> Said:
    if isinstance(exc, TimeoutError):
        return say(
            gettext_noop("No answer from %(address)s within %(seconds)d s."),
            address=address,
            seconds=int(timeout),
        )
    if isinstance(exc, ConnectionRefusedError):
        return say(gettext_noop("%(address)s refused the connection."), address=address)
    return say(
        gettext_noop("Could not talk to %(address)s: %(problem)s"),
        address=address,
        problem=f"{type(exc).__name__}: {exc}",
    )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
