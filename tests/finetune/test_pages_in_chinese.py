"""Issue 19, item 8: every page a member or an operator opens, read in 简体中文, shows no
English but names -- the console's pages for jobs in each state, data sets and model
repositories, and the admin's lists and forms."""

import json
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.models import Access
from finetune import states
from finetune.models import Job, JobStatus
from finetune.texts import say
from tests import factories

pytestmark = pytest.mark.django_db

# Names are not words to translate: the brand, units, standards and technical names, the
# test's own users and objects, the language menu's "English", the keys the help texts
# name (Command, Control on a Mac), the keys of the data formats as the files write them,
# and "<unknown>", which django-axes stores for a request header that was missing.
_NAMES = """
    Jingtiao MLU GPU CPU GiB MiB KiB LoRA QLoRA SFT DPO PPO GRPO ZeRO FSDP FSDP2 DeepSpeed
    JSON JSONL Alpaca ShareGPT OpenAI Kubernetes Pod Job IP HTTP URL UTC ID ETA tokens
    alice bob charlie dora admin demo sft_lora tiny llama data repo repos mlu vm sharegpt
    alpaca sft_messages jsonl safetensors PyTorch bf16 fp16 fp32 Llama Cambricon NVIDIA
    Hugging Face jingtiao Accept GET POST English Command Control Mac LDAP Schema Model
    null qwen sd messages instruction input output prompt chosen rejected text metadata
    file_name unknown API Bearer Authorization Standard Webhooks Kueue ClusterQueue LocalQueue
"""
NAMES = set(_NAMES.split())


class _Text(HTMLParser):
    """The text a reader sees: text nodes outside script and style, and titles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "template"):
            self._hidden += 1
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style", "template"):
            self._hidden = max(0, self._hidden - 1)

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def english(page: str) -> set[str]:
    reader = _Text()
    reader.feed(page)
    text = " ".join(reader.parts)
    text = re.sub(r"\S+[/:]\S+", " ", text)  # paths, addresses, identifiers: names too
    return {w for w in re.findall(r"[A-Za-z][A-Za-z_]+", text) if w not in NAMES}


ENDS = {
    JobStatus.SUCCEEDED: say(
        gettext_noop("All workers exited with code 0; the model is version %(number)d."), number=1
    ),
    JobStatus.FAILED: say(
        gettext_noop("worker %(rank)d exited with code %(code)s"), rank=0, code=1
    ),
}


@pytest.fixture
def scene(project, alice):
    """Jobs in every state, a data set and a repository, as a member meets them."""
    jobs = {}
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED):
        job = factories.job(project, alice, name=f"任务{len(jobs) + 1}", level=Access.READ_ONLY)
        if status != JobStatus.QUEUED:
            admitted = say(gettext_noop("admitted on %(nodes)s"), nodes="vm")
            states.transition(job, JobStatus.RUNNING, reason=admitted)
            Job.objects.filter(pk=job.pk).update(
                progress=0.4, eta_at=timezone.now() + timedelta(minutes=20)
            )
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            states.transition(Job.objects.get(pk=job.pk), status, reason=ENDS[status])
        jobs[status] = Job.objects.get(pk=job.pk)
    return jobs


def _get(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def test_the_console_pages_show_no_english_but_names(client, alice, scene):
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    job = scene[JobStatus.RUNNING]
    dataset, repo = job.train_dataset, job.model_repo
    urls = [
        reverse("finetune:job_list"),
        reverse("finetune:job_create"),
        reverse("finetune:dataset_list"),
        reverse("finetune:dataset_detail", args=[dataset.pk]),
        reverse("finetune:modelrepo_list"),
        reverse("finetune:modelrepo_detail", args=[repo.pk]),
        reverse("finetune:job_clone", args=[job.pk]),
        reverse("finetune:job_duration", args=[job.pk]),
        reverse("finetune:job_priority", args=[scene[JobStatus.QUEUED].pk]),
    ]
    for each in scene.values():
        detail = reverse("finetune:job_detail", args=[each.pk])
        urls += [detail, f"{detail}?tab=monitoring", f"{detail}?tab=logs", f"{detail}?tab=events"]
        urls += [reverse("finetune:job_events", args=[each.pk])]
    found = {url: english(_get(client, url)) for url in urls}
    assert {url: words for url, words in found.items() if words} == {}


def test_the_api_token_and_webhook_pages_show_no_english_but_names(client, project, alice, dora):
    from accounts import tokens
    from webhooks.models import Webhook, WebhookDelivery

    # what a page shows of a secret is a name, not words: taken out before reading
    secrets = [tokens.issue(alice, name="流水线", projects=[project])[0].prefix]
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    made = client.post(reverse("accounts:api_tokens"), {"name": "构建", "projects": [project.pk]})
    assert made.status_code == 201
    secrets += [made.context["new_key"], made.context["new_key"][:10]]
    pages = {"token made": made.content.decode()}
    pages["tokens"] = _get(client, reverse("accounts:api_tokens"))
    hook = Webhook.objects.create(
        project=project, url="https://hooks.example.com/in", events=["job.succeeded"]
    )
    refused = say(gettext_noop("The receiver answered %(status)d."), status=500)
    delivery = WebhookDelivery.objects.create(
        webhook=hook,
        event_type="job.succeeded",
        event_key="k",
        payload={},
        attempts=1,
        status=WebhookDelivery.Status.FAILED,
        response_status=500,
        error=str(refused),
        error_said=refused.data(),
    )
    secrets += [hook.secret, delivery.message_id]
    client.force_login(dora)
    client.cookies["django_language"] = "zh-hans"
    for name, args in (
        ("webhook_list", [project.pk]),
        ("webhook_create", [project.pk]),
        ("webhook_detail", [project.pk, hook.pk]),
        ("webhook_edit", [project.pk, hook.pk]),
        ("webhook_rotate", [project.pk, hook.pk]),
        ("webhook_delete", [project.pk, hook.pk]),
    ):
        pages[name] = _get(client, reverse(f"webhooks:{name}", args=args))
    for secret in secrets:
        pages = {name: page.replace(secret, "") for name, page in pages.items()}
    found = {name: english(page) for name, page in pages.items()}
    assert {name: words for name, words in found.items() if words} == {}


def test_the_admin_shows_no_english_but_names(client, admin, scene):
    from django.contrib import admin as site

    client.force_login(admin)
    client.cookies["django_language"] = "zh-hans"
    urls = [reverse("admin:index")]
    for model, model_admin in site.site._registry.items():
        meta = model._meta
        if meta.model_name == "scenario":
            continue  # its list shows the catalogue's names in both languages, as data
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        if model_admin.has_add_permission(_request(admin)):
            urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
    found = {url: english(_get(client, url)) for url in urls}
    assert {url: words for url, words in found.items() if words} == {}


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


def test_the_admins_selection_widget_speaks_chinese(client, admin):
    """Its words come from the admin's JavaScript catalogue, where Django lacks some."""
    client.force_login(admin)
    client.cookies["django_language"] = "zh-hans"
    catalogue = client.get(reverse("admin:jsi18n")).content.decode()
    for words in ("全选%s", "全部移除%s", "选择选中的%s", "（点击清除）"):  # noqa: RUF001
        assert json.dumps(words)[1:-1] in catalogue, words  # the catalogue escapes them
