"""The playground: a question to a model version, answered by a worker of the
``inference`` queue, the answer streamed to the page.

The page posts a question (``ask``): a row (`PlaygroundRun`) and a message to the
queue; no web worker waits for a model. The inference worker (``answer``) claims the
row, takes the model from the cache of loaded models its process keeps
(trainer/playground.py), and writes the answer into Django's cache as it is generated
-- the version's first, then the base model's, given the same conversation. The page
asks for what is there (``state``) a few times a second: its place in the line while it
waits, then the words so far, or the images.

Nothing is left hanging: a question no worker took up within
JINGTIAO_PLAYGROUND_WAIT_SECONDS, or one whose worker fell silent past the time limit,
is failed with the reason when next asked about (and by the sweep).
"""

from __future__ import annotations

import base64
import logging
import time
from datetime import timedelta

from django import forms
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from config.celery import enqueue
from finetune.models import ModelVersion, PlaygroundRun
from finetune.services.exports import base_model_of
from finetune.services.versions import files_gone
from finetune.storage import resolve
from finetune.texts import Said, duration, say, split

logger = logging.getLogger(__name__)
S = PlaygroundRun.Status
KEEP_SECONDS = 3600  # how long an answer stays readable in the cache
MAX_WAITING_PER_USER = 3
MAX_TURNS = 50
IMAGE_STEPS = 20
IMAGE_SIZE = 512
SIDES = ("version", "base")

_models = None  # the inference worker process's ModelCache, made on first use


def kind_of(version: ModelVersion) -> str | None:
    """ "chat" or "image": what the playground does with the version; None if nothing."""
    return {"llm": PlaygroundRun.Kind.CHAT, "t2i": PlaygroundRun.Kind.IMAGE}.get(
        (version.manifest or {}).get("model_kind")
    )


def refusal(version: ModelVersion) -> Said | None:
    """Why the version cannot be tried, or None."""
    if kind_of(version) is None:
        return say(gettext_noop("Versions of this kind cannot be tried here."))
    if gone := files_gone(version):
        return gone
    base = base_model_of(version)
    if base is None or not base[1].is_dir():
        name = base[0] if base else "?"
        return say(
            gettext_noop(
                "Its base model %(name)s is not on the data volume: the playground compares "
                "with it and loads LoRA versions on top of it."
            ),
            name=name,
        )
    return None


class HistoryField(forms.JSONField):
    """The conversation so far: [{"user": ..., "version": ..., "base": ...}, ...]."""

    def clean(self, value):
        turns = super().clean(value) or []
        if not isinstance(turns, list) or not all(
            isinstance(t, dict) and all(isinstance(t.get(k, ""), str) for k in ("user", *SIDES))
            for t in turns
        ):
            raise ValidationError(_("The conversation sent is not one the page writes."))
        if len(turns) > MAX_TURNS:
            raise ValidationError(
                _("A conversation holds at most %(count)d turns: start a new one.")
                % {"count": MAX_TURNS}
            )
        return [{k: t.get(k, "") for k in ("user", *SIDES)} for t in turns]


class QuestionForm(forms.Form):
    prompt = forms.CharField(label=gettext_lazy("Your message"), strip=True)
    history = HistoryField(required=False)
    max_new_tokens = forms.IntegerField(
        label=gettext_lazy("Max new tokens"),
        min_value=1,
        max_value=settings.JINGTIAO_PLAYGROUND_MAX_NEW_TOKENS,
        initial=128,
    )
    temperature = forms.FloatField(
        label=gettext_lazy("Temperature"), min_value=0, max_value=2, initial=0.7
    )
    top_p = forms.FloatField(label="Top-p", min_value=0.01, max_value=1, initial=0.9)
    seed = forms.IntegerField(
        label=gettext_lazy("Seed"), min_value=0, max_value=2**31 - 1, initial=0
    )
    compare = forms.BooleanField(
        label=gettext_lazy("Beside the base model"), required=False, initial=True
    )

    def clean(self):
        data = super().clean()
        limit = settings.JINGTIAO_PLAYGROUND_MAX_PROMPT_CHARS
        size = len(data.get("prompt") or "") + sum(
            len(t["user"]) + max(len(t["version"]), len(t["base"]))
            for t in data.get("history") or []
        )
        if size > limit:
            raise ValidationError(
                _(
                    "The conversation is %(size)d characters long; at most %(limit)d fit. "
                    "Start a new conversation or write less."
                )
                % {"size": size, "limit": limit}
            )
        return data


def ask(user, version: ModelVersion, data: dict) -> PlaygroundRun:
    """Queue a question (the caller checked that ``user`` may view the version's repo)."""
    why = refusal(version)
    if why is not None:
        raise ValidationError(why.render())
    waiting = PlaygroundRun.objects.filter(user=user, status__in=(S.QUEUED, S.RUNNING)).count()
    if waiting >= MAX_WAITING_PER_USER:
        raise ValidationError(
            _("You have %(count)d questions waiting for an answer already: wait for them first.")
            % {"count": waiting}
        )
    request = {
        "prompt": data["prompt"],
        "history": data.get("history") or [],
        "max_new_tokens": data["max_new_tokens"],
        "temperature": data["temperature"],
        "top_p": data["top_p"],
        "seed": data["seed"],
        "compare": bool(data.get("compare")),
    }
    with transaction.atomic():
        run = PlaygroundRun.objects.create(
            version=version, user=user, kind=kind_of(version), request=request
        )
    transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    from finetune.tasks import answer_playground

    enqueue(answer_playground, run_id)


def _key(run_id: int) -> str:
    return f"playground:{run_id}"


def _fail(run_id: int, reason: Said) -> None:
    text, said = split(reason)
    PlaygroundRun.objects.filter(pk=run_id, status__in=(S.QUEUED, S.RUNNING)).update(
        status=S.FAILED, error=text, error_said=said, finished_at=timezone.now()
    )


def _overdue(now) -> Q:
    waited = now - timedelta(seconds=settings.JINGTIAO_PLAYGROUND_WAIT_SECONDS)
    silent = now - timedelta(seconds=settings.JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS + 720)
    return Q(status=S.QUEUED, created_at__lt=waited) | Q(status=S.RUNNING, started_at__lt=silent)


def forget_old(now=None) -> int:
    """Remove the questions answered more than a day ago: their answers left the cache
    an hour after they were written."""
    now = now or timezone.now()
    old = PlaygroundRun.objects.filter(
        status__in=(S.DONE, S.FAILED), finished_at__lt=now - timedelta(days=1)
    )
    return old.delete()[0]


def give_up_overdue(now=None, **which) -> int:
    """Fail the questions nobody answers (all, or those ``which`` selects): never taken
    up, or taken by a worker that died."""
    now = now or timezone.now()
    count = 0
    for run in PlaygroundRun.objects.filter(_overdue(now), **which).only("pk", "status"):
        if run.status == S.QUEUED:
            _fail(
                run.pk,
                say(
                    gettext_noop(
                        "No inference worker took the question up within %(span)s: is one "
                        "running? An operator can tell."
                    ),
                    span=duration(timedelta(seconds=settings.JINGTIAO_PLAYGROUND_WAIT_SECONDS)),
                ),
            )
        else:
            _fail(run.pk, say(gettext_noop("The worker answering stopped before it finished.")))
        count += 1
    return count


def state(run: PlaygroundRun) -> dict:
    """What the page shows of a question now."""
    give_up_overdue(pk=run.pk)
    run.refresh_from_db(fields=["status", "error", "error_said", "started_at", "finished_at"])
    found = cache.get(_key(run.pk)) or {}
    answer = {
        "status": run.status,
        "status_text": run.get_status_display(),
        "sides": {side: found.get(side, "") for side in SIDES},
        "done": found.get("done", []),
        "seed": run.request.get("seed"),
        "compare": run.request.get("compare", False),
    }
    if run.status == S.QUEUED:
        ahead = PlaygroundRun.objects.filter(status=S.QUEUED).filter(
            Q(created_at__lt=run.created_at) | Q(created_at=run.created_at, pk__lt=run.pk)
        )
        answer["position"] = ahead.count() + 1
        answer["status_text"] = _("Waiting for a worker: number %(position)d in line.") % {
            "position": answer["position"]
        }
    if run.status == S.FAILED:
        answer["error"] = run.reason_text
    if run.kind == PlaygroundRun.Kind.IMAGE:
        answer["images"] = {side: cache.get(f"{_key(run.pk)}:{side}") is not None for side in SIDES}
    return answer


def image_of(run: PlaygroundRun, side: str) -> bytes | None:
    data = cache.get(f"{_key(run.pk)}:{side}") if side in SIDES else None
    return base64.b64decode(data) if data else None


# --- the inference worker ------------------------------------------------------------


def model_cache():
    global _models
    if _models is None:
        from trainer.playground import ModelCache

        _models = ModelCache(settings.JINGTIAO_PLAYGROUND_CACHE_BYTES)
    return _models


def answer(run_id: int) -> bool:
    """Answer one question; True if this call took it (a second delivery finds it taken)."""
    now = timezone.now()
    waited = now - timedelta(seconds=settings.JINGTIAO_PLAYGROUND_WAIT_SECONDS)
    claimed = PlaygroundRun.objects.filter(pk=run_id, status=S.QUEUED, created_at__gte=waited)
    if not claimed.update(status=S.RUNNING, started_at=now):
        return False
    run = PlaygroundRun.objects.select_related("version__job__pretrained_model").get(pk=run_id)
    why = refusal(run.version)
    if why is not None:
        _fail(run_id, why)
        return True
    try:
        if run.kind == PlaygroundRun.Kind.CHAT:
            _chat(run)
        else:
            _images(run)
    except Exception as exc:
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            raise
        logger.exception("playground %s failed", run_id)
        _fail(
            run_id,
            say(
                gettext_noop("The model could not answer: %(error)s"),
                error=f"{type(exc).__name__}: {exc}",
            ),
        )
        return True
    PlaygroundRun.objects.filter(pk=run_id, status=S.RUNNING).update(
        status=S.DONE, finished_at=timezone.now()
    )
    return True


def timed_out(run_id: int) -> None:
    _fail(
        run_id,
        say(
            gettext_noop("It took longer than %(span)s: ask for fewer new tokens."),
            span=duration(timedelta(seconds=settings.JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS)),
        ),
    )


def _loaded(run: PlaygroundRun, *, base_alone: bool = False):
    from trainer.playground import base_model_alone, folder_bytes, load

    version = run.version
    _name, base = base_model_of(version)  # type: ignore[misc]
    source = resolve(version.location)
    if base_alone:
        kind = version.manifest.get("model_kind")
        return model_cache().get(
            f"base:{base}", folder_bytes(base), lambda size: base_model_alone(base, kind, size)
        )
    size = folder_bytes(base) + folder_bytes(source)
    return model_cache().get(
        str(source), size, lambda size: load(source, base, version.manifest, size)
    )


def _generation(request: dict, deadline: float):
    """The request's settings, with what is left of the answer's time (both sides share
    JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS, counted once the model is loaded)."""
    from trainer.playground import Generation

    return Generation(
        max_new_tokens=int(request["max_new_tokens"]),
        temperature=float(request["temperature"]),
        top_p=float(request["top_p"]),
        seed=int(request["seed"]),
        max_seconds=max(deadline - time.monotonic(), 1.0),
    )


def _deadline() -> float:
    return time.monotonic() + settings.JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS


def _messages(request: dict, side: str) -> list[dict[str, str]]:
    messages = []
    for turn in request.get("history") or []:
        messages.append({"role": "user", "content": turn["user"]})
        if turn.get(side):
            messages.append({"role": "assistant", "content": turn[side]})
    messages.append({"role": "user", "content": request["prompt"]})
    return messages


def _chat(run: PlaygroundRun) -> None:
    from trainer.playground import stream_chat, throttled

    request = run.request
    sides = SIDES if request.get("compare") else SIDES[:1]
    shown = {"done": []}
    key = _key(run.pk)
    loaded = _loaded(run)
    deadline = _deadline()
    for side in sides:
        uses_adapter = side == "version"
        model = loaded
        if side == "base" and not loaded.has_adapter:
            model = _loaded(run, base_alone=True)

        def write(text: str, side=side) -> None:
            shown[side] = text
            cache.set(key, dict(shown), KEEP_SECONDS)

        put = throttled(write)
        text = ""
        settings_ = _generation(request, deadline)
        for piece in stream_chat(model, _messages(request, side), settings_, adapter=uses_adapter):
            text += piece
            put(text)
        shown["done"] = [*shown["done"], side]
        put(text, True)


def _images(run: PlaygroundRun) -> None:
    from trainer.playground import images

    request = run.request
    sides = SIDES if request.get("compare") else SIDES[:1]
    key = _key(run.pk)
    loaded = _loaded(run)
    settings_ = _generation(request, _deadline())
    size = IMAGE_SIZE
    sample = getattr(loaded.model.unet.config, "sample_size", None)
    scale = getattr(loaded.model, "vae_scale_factor", 8)
    if isinstance(sample, int):
        size = sample * scale  # the size the model was made for
    done = []
    for side in sides:
        model = loaded
        if side == "base" and not loaded.has_adapter:
            model = _loaded(run, base_alone=True)
        png = images(
            model, request["prompt"], settings_, IMAGE_STEPS, size, adapter=side == "version"
        )
        cache.set(f"{key}:{side}", base64.b64encode(png).decode(), KEEP_SECONDS)
        done.append(side)
        cache.set(key, {"done": list(done)}, KEEP_SECONDS)
