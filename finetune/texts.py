"""What the platform writes down for later readers, said in each reader's language.

A status reason or an event is written once, often by a worker that serves no one
(a Celery task, in the server's language), and read later by people in theirs. So the
platform keeps, beside the English text (for logs, the admin's search, scripts),
what to say and with what: the message id and its parameters (`Said.data()`, in a
JSON field). A page shows `render(data, text)`: the message in the page's language,
or the text as written where there is no message (a trainer's own words, rows
written before).

    said = say(gettext_noop("admitted on %(nodes)s"), nodes="node-1, node-2")
    str(said)            # "admitted on node-1, node-2", always English
    render(said.data())  # "已调度到 node-1, node-2" on a Chinese page

A parameter may itself be a `Said` (said in the same language), a `Duration`
(written in the reader's words: "2 days", "2天") or a `Choice` (a priority or a
status, by its label).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone, translation
from django.utils.timesince import timeuntil
from django.utils.translation import gettext

from scheduler.planner import Words


@dataclass(frozen=True)
class Duration:
    seconds: float


@dataclass(frozen=True)
class Choice:
    """A value of one of the jobs' choices ("priority", "status"), said by its label."""

    kind: str
    value: Any


class Said(str):
    """Words to say later: a `str` of their English text (so whatever treats a reason
    as text goes on working), with the message id and parameters to say them in
    another language (`render`)."""

    msgid: str
    params: Mapping[str, Any]

    def __new__(cls, msgid: str, params: Mapping[str, Any] | None = None) -> Said:
        params = dict(params or {})
        with translation.override("en"):
            text = _format(msgid, params)
        said = super().__new__(cls, text)
        said.msgid, said.params = msgid, params
        return said

    def render(self) -> str:
        """In the active language."""
        return _format(self.msgid, self.params)

    def data(self) -> dict[str, Any]:
        return {"msgid": self.msgid, "params": {k: _encode(v) for k, v in self.params.items()}}


def _format(msgid: str, params: Mapping[str, Any]) -> str:
    values = {name: _value(value) for name, value in params.items()}
    try:
        return gettext(msgid) % values if values else gettext(msgid)
    except (KeyError, TypeError, ValueError):  # a translation that lost a parameter
        return msgid % values if values else msgid


def say(msgid: str, **params: Any) -> Said:
    """`msgid` is marked for translation where it is written (gettext_noop)."""
    return Said(msgid, params)


def duration(delta: timedelta) -> Duration:
    return Duration(delta.total_seconds())


def _encode(value: Any) -> Any:
    if isinstance(value, Said):
        return {"said": value.data()}
    if isinstance(value, Duration):
        return {"seconds": value.seconds}
    if isinstance(value, Choice):
        return {"choice": value.kind, "value": value.value}
    if isinstance(value, timedelta):
        return {"seconds": value.total_seconds()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "said" in value:
        return from_data(value["said"]) or ""
    if isinstance(value, dict) and "seconds" in value:
        return Duration(float(value["seconds"]))
    if isinstance(value, dict) and "choice" in value:
        return Choice(str(value["choice"]), value.get("value"))
    return value


def _value(value: Any) -> Any:
    if isinstance(value, Said):
        return value.render()
    if isinstance(value, Duration):
        return span(timedelta(seconds=value.seconds))
    if isinstance(value, Choice):
        from finetune.models import JobStatus, Priority  # the models import this module

        kinds = {"priority": Priority, "status": JobStatus}
        try:
            return kinds[value.kind](value.value).label
        except (KeyError, ValueError):
            return str(value.value)
    return value


def from_data(data: Any) -> Said | None:
    if not isinstance(data, dict) or not isinstance(data.get("msgid"), str):
        return None
    params = data.get("params") or {}
    if not isinstance(params, dict):
        return None
    return Said(data["msgid"], {k: _decode(v) for k, v in params.items()})


def render(data: Any, text: str = "") -> str:
    """The message of `data` in the page's language, else `text` as written."""
    said = from_data(data)
    return said.render() if said is not None else text


def split(value: str | Said | None) -> tuple[str, dict[str, Any] | None]:
    """(English text, data or None) of what a caller gave: a Said, or plain words."""
    if isinstance(value, Said):
        return str.__str__(value), value.data()
    return str(value or ""), None


def said(msgid: str, values: Mapping[str, Any]) -> Said:
    """`say` with the parameters as a mapping, as `gettext(msgid) % values` takes them."""
    return Said(msgid, values)


def said_of(words: Words) -> Said:
    """The planner's words (no Django there) as words to say in a reader's language."""
    return said(
        words.msgid,
        {
            name: said_of(value) if isinstance(value, Words) else value
            for name, value in words.params
        },
    )


def cannot_run(reason: Said) -> str:
    """Why a job can never run, as the create form's error and the prediction say it."""
    return gettext("Cannot run: %(reason)s") % {"reason": reason.render()}


def span(duration: timedelta | None) -> str:
    """A duration in words of the page's language: "2 days", "1 hour, 30 minutes",
    "2天", "1小时30分钟"; never Python's "2 days, 0:00:00"."""
    if duration is None:
        return "—"
    now = timezone.now()
    return timeuntil(now + duration, now, depth=2)


def shown(value: Any) -> Any:
    """A value in the active language where it is a Said, else as it is."""
    return value.render() if isinstance(value, Said) else value


def in_page_language(english: str, chinese: str) -> str:
    """Words kept in both languages by the catalogue (names and descriptions of
    algorithms, parameters, presets): the Chinese on a Chinese page when there is
    one, else the English."""
    if chinese and (translation.get_language() or "en").lower().startswith("zh"):
        return chinese
    return english
