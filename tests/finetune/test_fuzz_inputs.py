"""Every form and the report API driven with generated bad input (issue 11).

Each example starts from a request the page would accept and replaces a few of its
fields with hostile values (non-finite and huge numbers, NUL bytes, paths out of the
project, HTML, very long text, wrong types), or sends an arbitrary JSON body to the
report API. The promise: no answer is a 5xx, and a refused request (a 4xx) stores
nothing: no row, no grant, no file under the data root.

JINGTIAO_FUZZ_EXAMPLES sets the examples per endpoint (CI: the default, derandomised
so a run is repeatable); a larger number explores further.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Access
from finetune.models import (
    Dataset,
    DatasetUserObjectPermission,
    Job,
    JobEvent,
    JobStatus,
    JobUserObjectPermission,
    MetricPoint,
    ModelRepo,
    ReportBatch,
    ResourceSample,
)
from finetune.states import transition
from scheduler.launching import hash_token
from scheduler.models import ResourcePool
from tests import factories
from tests.finetune import pages_support as support
from trainer.samples import write_sample_dataset

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("JINGTIAO_FUZZ_EXAMPLES", "50"))


def fuzz(scale: float = 1.0):
    """Hypothesis settings of one endpoint: `scale` times the examples, for cheap ones."""
    return settings(
        max_examples=max(1, int(EXAMPLES * scale)),
        deadline=None,
        derandomize="JINGTIAO_FUZZ_EXAMPLES" not in os.environ,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


TOKEN = "fuzz-token"

NASTY_NUMBERS = [
    "inf",
    "-inf",
    "Infinity",
    "nan",
    "NaN",
    "1e308",
    "-1e308",
    "1e309",
    "5e-324",
    "-0",
    "0",
    "-1",
    "0.05",
    "1.5",
    "2.5e3",
    str(2**31),
    str(2**53 + 1),
    str(2**63),
    str(10**20),
    "9" * 5000,
    "0x10",
    "\uff11\uff12",  # full-width digits
    "\u0663",  # an Arabic-Indic digit
    "1_000",
    " 3 ",
    "",
]
NASTY_TEXT = [
    "\x00",
    "a\x00b",
    "../../etc/passwd",
    "/etc/passwd",
    "secret_key",
    "jingtiao.sqlite3",
    "jobs/1/spec.json",
    "logs/web.log",
    "datasets/1/x",
    "repos/1/x",
    "models/tiny-llama",
    "staticfiles",
    ".",
    "/",
    "<script>alert(1)</script>",
    '" onmouseover="x',
    "{{ 7*7 }}",
    "%(name)s",
    "a" * 5000,
    "\u202e",
    "\ud7ff",
    "名称" * 100,
    "x" * 129,
    "1,2,3",
    "abc",
]
values = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.sampled_from(NASTY_TEXT),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=60),
)


def mutated(base: dict) -> st.SearchStrategy[dict]:
    """`base` with one to four fields replaced or added, some by lists of values."""
    names = st.sampled_from([*base, "_refresh", "_shown_algorithm", "next", "pk", "extra"])
    value = st.one_of(values, st.lists(values, min_size=1, max_size=5))
    return st.dictionaries(names, value, min_size=1, max_size=4).map(
        lambda changes: {**base, **changes}
    )


def snapshot() -> tuple:
    """Everything a refused request must leave as it was."""
    root = Path(django_settings.DATA_ROOT)
    files = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if "cache" not in path.relative_to(root).parts
    )
    jobs = list(
        Job.objects.order_by("pk").values_list(
            "pk", "status", "priority", "duration", "access", "node_count", "name"
        )
    )
    jobs.append(list(Dataset.objects.order_by("pk").values_list("pk", "access", "name")))
    counts = [
        model.objects.count()
        for model in (
            Dataset,
            ModelRepo,
            JobEvent,
            MetricPoint,
            ResourceSample,
            ReportBatch,
            DatasetUserObjectPermission,
            JobUserObjectPermission,
        )
    ]
    return files, jobs, counts


def check(response, before: tuple) -> None:
    assert response.status_code < 500, response.content[:2000]
    if 400 <= response.status_code < 500:
        assert snapshot() == before


@pytest.fixture
def world(project, other_project, alice, bob, charlie):
    """A job form that would be accepted, a running job, and another project's pool."""
    support.catalog()
    dataset = support.good_dataset(project, alice, level=Access.READ_WRITE)
    repo = factories.model_repo(project, alice, location=f"repos/{project.pk}/out")
    spec = factories.node_spec()
    support.node()
    Path(django_settings.DATA_ROOT, "secret_key").write_text("k")
    write_sample_dataset(
        "sft_messages", Path(django_settings.DATA_ROOT) / f"datasets/{project.pk}/ok.jsonl"
    )
    theirs = ResourcePool.objects.create(name="theirs", dedicated=True)
    theirs.projects.add(other_project)
    running = factories.job(project, alice, level=Access.READ_WRITE)
    transition(running, JobStatus.RUNNING)
    Job.objects.filter(pk=running.pk).update(report_token_hash=hash_token(TOKEN))
    return {
        "job_post": support.job_post(dataset, repo, spec),
        "running": Job.objects.get(pk=running.pk),
        "project": project,
    }


def test_the_create_form_and_its_prediction_never_fail(client, world, alice):
    client.force_login(alice)

    @fuzz()
    @given(post=mutated(world["job_post"]), url=st.sampled_from(["job_create", "job_prediction"]))
    def run(post, url):
        before = snapshot()
        check(client.post(reverse(f"finetune:{url}"), post), before)

    run()


def test_the_data_set_and_repo_forms_never_fail(client, world, alice, bob, charlie):
    project = world["project"]
    base = {
        "name": "fuzzed",
        "scenario": str(factories.scenario().pk),
        "access": Access.READ_ONLY,
        "path": f"datasets/{project.pk}/ok.jsonl",
        "description": "",
    }

    @fuzz(2)
    @given(
        post=mutated(base),
        url=st.sampled_from(["dataset_create", "modelrepo_create"]),
        user=st.sampled_from([alice, bob, charlie]),
    )
    def run(post, url, user):
        client.force_login(user)
        before = snapshot()
        check(client.post(reverse(f"finetune:{url}"), post), before)

    run()


def test_the_job_operations_never_fail(client, world, alice, bob, charlie):
    job = world["running"]
    base = {"duration_preset": "custom", "duration_custom_hours": "3", "priority": "20"}

    @fuzz(3)
    @given(
        post=mutated(base),
        action=st.sampled_from(["job_duration", "job_priority", "job_stop", "job_delete"]),
        user=st.sampled_from([bob, charlie]),
    )
    def run(post, action, user):
        # Stop and delete are fuzzed as members who may not do them: they must refuse.
        client.force_login(user if action in ("job_stop", "job_delete") else alice)
        before = snapshot()
        check(client.post(reverse(f"finetune:{action}", args=[job.pk]), post), before)

    run()


def test_the_lists_filters_and_the_logins_never_fail(client, world, alice):
    job = world["running"]
    filters = {"q": "a", "status": "running", "creator": "alice", "spec": "1", "sort": "name"}
    filters.update({"model_repo": "x", "page": "1", "per_page": "20", "edit": "1"})

    @fuzz()
    @given(
        query=mutated(filters),
        logs=mutated({"since": "", "worker": "0", "from": "start", "range": "1h"}),
        login=mutated({"username": "alice", "password": "wrong", "next": "/jobs/"}),
        bulk=mutated({"pk": str(job.pk), "_all": "", "q": ""}),
    )
    def run(query, logs, login, bulk):
        client.force_login(alice)
        for url in ("finetune:job_list", "finetune:dataset_list", "finetune:modelrepo_list"):
            check(client.get(reverse(url), query), snapshot())
        for url in ("finetune:job_logs", "finetune:job_metrics", "finetune:job_detail"):
            check(client.get(reverse(url, args=[job.pk]), logs), snapshot())
        check(client.post(reverse("finetune:job_bulk_delete"), bulk), snapshot())
        check(
            client.post(reverse("accounts:switch_project"), {"project": login["username"]}),
            snapshot(),
        )
        client.logout()
        check(client.post(reverse("accounts:login"), login), snapshot())

    run()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
METRIC_KEYS = ["step", "epoch", "loss", "eval_loss", "learning_rate", "progress", "eta_seconds"]
RESOURCE_KEYS = ["cpu_percent", "device_util", "memory_bytes", "net_rx_bytes", "worker"]


def _item(keys: list[str]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"time": st.just("NOW") | json_values},
        optional={key: json_values | st.sampled_from(NASTY_NUMBERS) for key in keys},
    )


def report_bodies(job_id: int) -> st.SearchStrategy[bytes]:
    body = st.fixed_dictionaries(
        {
            "job_id": st.just(job_id) | json_values,
            "worker": st.just("node-0") | json_values,
            "seq": st.integers(min_value=-5, max_value=2**64) | json_values,
        },
        optional={
            "metrics": st.lists(_item(METRIC_KEYS), max_size=3) | json_values,
            "resources": st.lists(_item(RESOURCE_KEYS), max_size=3) | json_values,
        },
    )

    def encode(value) -> bytes:
        text = json.dumps(value, allow_nan=True)
        return text.replace('"NOW"', repr(time.time())).encode()

    return (
        body.map(encode)
        | st.binary(max_size=200)
        | st.sampled_from([b"[" * 50_000, b'{"a":' * 50_000, b"\xff\xfe{", b"", b"null", b"{}"])
    )


def test_the_report_api_never_fails_and_stores_only_what_it_accepts(client, world, settings):
    settings.JINGTIAO_REPORT_RATE_PER_MINUTE = 100_000
    job = world["running"]
    url = reverse("job_report", args=[job.pk])

    @fuzz(6)
    @given(
        body=report_bodies(job.pk),
        content_type=st.sampled_from(["application/json", "application/json; charset=utf-8"])
        | st.sampled_from(["text/plain", "application/x-www-form-urlencoded", ""]),
    )
    def run(body, content_type):
        before = snapshot()
        response = client.post(
            url, body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
        )
        check(response, before)
        if response.status_code == 200 and response.json()["stored"]:
            stored = MetricPoint.objects.filter(job=job).order_by("-pk").first()
            if stored is not None and stored.step is not None:
                assert 0 <= stored.step < 2**31

    run()
