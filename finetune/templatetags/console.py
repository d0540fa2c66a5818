"""Small template helpers of the console pages."""

from __future__ import annotations

import functools

from django import template
from django.http import HttpRequest
from django.urls import get_script_prefix, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.timesince import timeuntil

from finetune import monitoring, texts
from finetune.filters import DEFAULT_SORT
from finetune.models import Job, JobStatus

register = template.Library()


@register.simple_tag(takes_context=True)
def sort_header(context, key: str, label: str) -> str:
    """A column header that sorts by `key`, and the other way round when it already does."""
    request: HttpRequest = context["request"]
    params = request.GET.copy()
    current = params.get("sort") or DEFAULT_SORT
    wanted = f"-{key}" if current == key else key
    arrow = "▲" if current == key else "▼" if current == f"-{key}" else ""
    params["sort"] = wanted
    params.pop("page", None)
    url = f"?{params.urlencode()}"
    return format_html(
        '<a href="{}" hx-get="{}" hx-push-url="true" data-sort="{}">{}</a> {}',
        url,
        url,
        key,
        label,
        arrow,
    )


@register.simple_tag(takes_context=True)
def page_url(context, number: int) -> str:
    params = context["request"].GET.copy()
    params["page"] = number
    return f"?{params.urlencode()}"


@register.filter
def remaining(job: Job) -> str:
    """What is left of the job's duration: all of it while queued, until the deadline running."""
    if job.status == JobStatus.QUEUED:
        return span(job.duration)  # not counting down: the clock starts when it does
    if job.status == JobStatus.RUNNING and job.deadline:
        return timeuntil(job.deadline)
    return "—"


@register.filter
def moment(value) -> str:
    """A time soon, as short as it can be read: "20:41" today, "12月2日 01:41" after."""
    if value is None:
        return "—"
    local, today = timezone.localtime(value), timezone.localdate()
    clock = formats.time_format(local, "TIME_FORMAT")
    if local.date() == today:
        return clock
    return f"{formats.date_format(local, 'MONTH_DAY_FORMAT')} {clock}"


span = register.filter("span", texts.span)


@register.filter
def problem_text(problem: dict) -> str:
    """A data set's problem (a report's row) in the page's language, where the
    validator said what it said (trainer/words.py); else its English words."""
    return texts.render(problem.get("said"), problem.get("problem", ""))


@register.filter
def progress_text(job: Job) -> str:
    return monitoring.progress_text(job)


@register.filter
def first_spec(job: Job):
    """The spec in use, else the first choice (prefetched by the list view)."""
    if job.spec_in_use is not None:
        return job.spec_in_use
    choices = list(job.spec_choices.all())
    return choices[0].spec if choices else None


@register.filter
def nodes_of(job: Job) -> list[str]:
    """Node names of a job's placement (a list by rank of {"rank", "node", "devices"})."""
    return [str(entry["node"]) for entry in job.placement or [] if entry.get("node")]


@register.filter
def forecast_of(forecasts: dict, job: Job):
    """The queue forecast of one job in the list, if the plan has it."""
    return (forecasts or {}).get(job.pk)


_SENTINEL = 987654321


@functools.cache
def _url_pattern(name: str, prefix: str) -> str:
    return reverse(name, args=[_SENTINEL])


@register.simple_tag
def object_url(name: str, pk: int) -> str:
    """`{% url name pk %}` for the rows of a list: the pattern is reversed once per
    process (a list page draws six links a row, and reversing is most of their cost)."""
    return _url_pattern(name, get_script_prefix()).replace(str(_SENTINEL), str(pk), 1)
