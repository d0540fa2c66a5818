"""Words the trainer writes for people, kept with what it takes to say them in another
language: the English text, the message id and its parameters. No Django here; the
platform says them in each reader's language (finetune.texts: the data kept is
``{"msgid", "params"}``, a parameter that is itself words as ``{"said": ...}``).

``gettext_noop`` only marks a message id for the platform's catalogue (makemessages
finds it by its name), as in scheduler/planning/reasons.py.
"""

from __future__ import annotations

from typing import Any


def gettext_noop(msgid: str) -> str:
    return msgid


class Text(str):
    """A ``str`` of the English words, with ``msgid`` and ``params`` beside it."""

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, **params: Any) -> Text:
        text = super().__new__(cls, msgid % params if params else msgid)
        text.msgid, text.params = msgid, params
        return text

    def __reduce__(self):
        return _rebuilt, (self.msgid, self.params)

    def data(self) -> dict[str, Any]:
        """The message as finetune.texts keeps it."""
        return {
            "msgid": self.msgid,
            "params": {
                name: {"said": value.data()} if isinstance(value, Text) else value
                for name, value in self.params.items()
            },
        }


def _rebuilt(msgid: str, params: dict[str, Any]) -> Text:
    return Text(msgid, **params)


say = Text
