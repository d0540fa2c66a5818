"""示例图片: a text-to-image job's sample images, drawn at each evaluation, listed on its
monitoring tab and served from its own folder only, to whoever may view the job."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Access
from finetune import access, monitoring
from finetune.models import Algorithm, Scenario
from finetune.storage import job_output, resolve
from tests import factories
from tests.finetune import pages_support as support
from trainer.output import staging_of

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


@pytest.fixture
def t2i_job(project, alice):
    support.catalog()
    algorithm = Algorithm.objects.get(code="t2i_lora")
    return factories.job(
        project,
        alice,
        scenario=Scenario.objects.get(code="t2i/finetune"),
        algorithm=algorithm,
        parameters={"validation_prompt": "a red square"},
    )


def _draw(job, *names, final=False):
    output = resolve(job_output(job.model_repo.location, job.pk))
    folder = (output if final else staging_of(output)) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(PNG)
    return folder


def test_samples_come_by_step_from_the_staging_folder_while_it_trains(client, alice, t2i_job):
    _draw(t2i_job, "step-000020.png", "step-000010.png", ".step-000030.png.partial", "x.png")
    client.force_login(alice)

    data = client.get(reverse("finetune:job_metrics", args=[t2i_job.pk])).json()

    assert [one["step"] for one in data["samples"]] == [10, 20]
    image = client.get(data["samples"][0]["url"])
    assert image.status_code == 200 and b"".join(image.streaming_content) == PNG


def test_once_final_the_output_holds_them_with_the_saved_adapters_own(client, alice, t2i_job):
    _draw(t2i_job, "step-000010.png", "sample.png", final=True)
    client.force_login(alice)
    found = monitoring.samples(t2i_job)
    assert [one["step"] for one in found] == [10, None]
    assert client.get(found[1]["url"]).status_code == 200


def test_a_long_run_shows_the_first_the_last_and_evenly_between(t2i_job):
    _draw(t2i_job, *[f"step-{n:06d}.png" for n in range(100, 100_001, 100)])
    steps = [one["step"] for one in monitoring.samples(t2i_job)]
    assert len(steps) == monitoring.MAX_SAMPLES
    assert steps[0] == 100 and steps[-1] == 100_000 and steps == sorted(steps)


@pytest.mark.parametrize(
    "name", ["x.png", "..%2Fsecret.png", "step-1.png", ".step-000010.png.partial", "sample.jpg"]
)
def test_only_a_sample_of_the_jobs_own_folder_is_served(client, alice, t2i_job, name):
    folder = _draw(t2i_job, "step-000010.png", "x.png")
    (folder.parent / "secret.png").write_bytes(PNG)
    client.force_login(alice)
    response = client.get(f"/jobs/{t2i_job.pk}/samples/{name}")
    assert response.status_code == 404


def test_who_may_not_view_the_job_gets_no_image(client, project, alice, bob, charlie, t2i_job):
    _draw(t2i_job, "step-000010.png")
    access.set_access(t2i_job, Access.NONE)
    url = reverse("finetune:job_sample", args=[t2i_job.pk, "step-000010.png"])
    client.force_login(bob)  # the job is not shared
    assert client.get(url).status_code == 404
    client.force_login(charlie)  # another project
    assert client.get(url).status_code == 404
    access.set_access(t2i_job, Access.READ_ONLY)
    client.force_login(bob)
    assert client.get(url).status_code == 200


def test_a_language_model_job_has_no_samples(client, project, alice):
    job = factories.job(project, alice)
    _draw(job, "step-000010.png")
    client.force_login(alice)
    assert client.get(reverse("finetune:job_metrics", args=[job.pk])).json()["samples"] == []
    url = reverse("finetune:job_sample", args=[job.pk, "step-000010.png"])
    assert client.get(url).status_code == 404


def test_the_tab_has_its_gallery_in_chinese(client, alice, t2i_job):
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    page = client.get(reverse("finetune:job_detail", args=[t2i_job.pk]), {"tab": "monitoring"})
    text = page.content.decode()
    assert 'data-testid="sample-grid"' in text and "示例图片" in text and "a red square" in text
