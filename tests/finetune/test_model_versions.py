"""A model version's page, its download and its merge into the base model (issue 15):
real tiny models, a real zip, the export carried out as the inference worker would."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tracemalloc
import zipfile
from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Access
from finetune.models import ModelExport, ModelVersion
from finetune.services import exports, modelwork
from finetune.storage import resolve
from tests import factories


def _tiny_version(repo, *, number: int = 1, warm: bool = False) -> ModelVersion:
    """A LoRA version as a training run leaves it, on a tiny model built here (``warm``:
    one that has read a little text first, so that its answers read as words)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.output import StagedOutput
    from trainer.tiny import build_tiny_llm

    base = resolve("models/tiny-llama")
    if not base.is_dir():
        build_tiny_llm(base, warm_up_steps=40 if warm else 0)
    location = f"{repo.location}/job-{number}"
    staged = StagedOutput(resolve(location))
    staging = staged.prepare()
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base)),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.05 if warm else 0.5)
    model.save_pretrained(str(staging / "adapter"))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(staging / "adapter"))
    final = staged.finish(
        {
            "model_kind": "llm",
            "scenario": "llm/sft",
            "algorithm": "sft_lora",
            "base_model": "models/tiny-llama",
            "artifacts": {"adapter": "adapter", "tokenizer": "adapter"},
            "metrics": {"final_loss": 1.25, "validation_loss": 1.5, "best_checkpoint_step": 6},
            "spec": {"parameters": {"learning_rate": 0.0002, "lora_rank": 4}},
        }
    )
    manifest = json.loads((final / "manifest.json").read_text())
    return ModelVersion.objects.create(
        repo=repo,
        number=number,
        location=location,
        manifest=manifest,
        metrics=manifest["metrics"],
    )


@pytest.fixture
def version(project, alice):
    repo = factories.model_repo(project, alice, Access.READ_ONLY, name="客服助手")
    return _tiny_version(repo)


def _url(name: str, version: ModelVersion, *extra) -> str:
    return reverse(f"finetune:{name}", args=[version.repo_id, version.number, *extra])


def _unzipped(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_the_version_page_says_what_it_is_and_lists_its_files(client, alice, version):
    client.force_login(alice)
    page = client.get(_url("modelversion_detail", version)).content.decode()
    assert "tiny-llama" in page and "1.25" in page and "learning_rate" in page
    assert "adapter/adapter_model.safetensors" in page
    assert 'data-testid="export-button"' in page and 'data-testid="version-download"' in page
    repo_page = client.get(reverse("finetune:modelrepo_detail", args=[version.repo_id]))
    assert _url("modelversion_detail", version) in repo_page.content.decode()


def test_the_archive_holds_every_file_with_checksums_that_match(client, bob, version):
    client.force_login(bob)  # read-only on the repo: downloading is viewing
    response = client.get(_url("modelversion_download", version))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "filename*=utf-8''" in response["Content-Disposition"]  # the name is Chinese
    archive = _unzipped(response)
    top = archive.namelist()[0].split("/")[0]
    assert top.endswith("-v1")
    names = {name.removeprefix(f"{top}/") for name in archive.namelist()}
    on_disk = {
        p.relative_to(resolve(version.location)).as_posix()
        for p in resolve(version.location).rglob("*")
        if p.is_file()
    }
    assert names == on_disk | {"SHA256SUMS"}
    sums = dict(
        reversed(line.split("  ", 1))
        for line in archive.read(f"{top}/SHA256SUMS").decode().splitlines()
    )
    manifest = {f["path"]: f["sha256"] for f in version.manifest["files"]}
    for name in on_disk:
        digest = hashlib.sha256(archive.read(f"{top}/{name}")).hexdigest()
        assert sums[name] == digest
        if name != "manifest.json":  # the manifest cannot hold its own checksum
            assert manifest[name] == digest


def test_the_download_streams_a_big_file_without_holding_it(client, alice, version):
    big = resolve(version.location) / "adapter" / "big.bin"
    block = os.urandom(1 << 20)
    with big.open("wb") as handle:
        for _ in range(200):
            handle.write(block)
    client.force_login(alice)
    response = client.get(_url("modelversion_download", version))
    tracemalloc.start()
    total = 0
    for chunk in response.streaming_content:
        total += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > 200 << 20
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB while streaming 200 MiB"


def test_one_file_downloads_and_nothing_outside_the_version_does(client, bob, version, settings):
    outside = resolve(version.location).parent / "secret.txt"
    outside.write_text("not yours")
    (resolve(version.location) / "link").symlink_to(outside)
    client.force_login(bob)
    ok = client.get(_url("modelversion_file", version, "adapter/adapter_config.json"))
    assert ok.status_code == 200 and b"lora_alpha" in b"".join(ok.streaming_content)
    for name in ("../secret.txt", "link", "adapter/../../secret.txt", "nothing"):
        assert client.get(_url("modelversion_file", version, name)).status_code == 404
    settings.JINGTIAO_X_ACCEL_PREFIX = "/_data/"
    sent = client.get(_url("modelversion_file", version, "adapter/adapter_config.json"))
    wanted = f"/_data/{version.location}/adapter/adapter_config.json"
    assert unquote(sent["X-Accel-Redirect"]) == wanted


def test_who_may_see_download_and_merge_follows_the_repo(
    client, alice, bob, dora, charlie, version
):
    from finetune import access

    page, download, export = (
        _url("modelversion_detail", version),
        _url("modelversion_download", version),
        _url("modelversion_export", version),
    )
    client.force_login(bob)  # read-only: sees and downloads, may not merge
    assert 'data-testid="export-button"' not in client.get(page).content.decode()
    assert client.post(export).status_code == 403
    access.set_access(version.repo, Access.NONE)
    client.force_login(dora)  # the project's administrator: every action, by role
    assert 'data-testid="export-button"' in client.get(page).content.decode()
    for user in (bob, charlie):  # a member, now with no access, and a non-member
        client.force_login(user)
        for url in (page, download, _url("modelversion_file", version, "manifest.json")):
            assert client.get(url).status_code == 404
        assert client.post(export).status_code == 404
    client.logout()
    assert client.get(download).status_code == 302  # to the login page
    assert not ModelExport.objects.exists()


def test_a_merge_asked_on_the_page_becomes_a_new_version_that_loads_alone(
    client, alice, version, django_capture_on_commit_callbacks, monkeypatch
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    queued = []
    monkeypatch.setattr(exports, "_enqueue", queued.append)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url("modelversion_export", version))
        again = client.post(_url("modelversion_export", version), follow=True)
    assert "already under way" in again.content.decode()
    export = ModelExport.objects.get()
    assert queued == [export.pk] and export.status == "pending"
    page = client.get(_url("modelversion_detail", version)).content.decode()
    assert 'hx-trigger="every 3s"' in page  # the panel follows it

    assert exports.run_export(export.pk)  # what the inference worker does with the message
    assert not exports.run_export(export.pk)  # a second delivery finds it done
    export.refresh_from_db()
    assert export.status == "succeeded" and export.progress == 1.0
    merged = export.result
    assert (merged.number, merged.derived_from, merged.repo) == (2, version, version.repo)
    assert merged.location == f"{version.repo.location}/export-{export.pk}"
    model = AutoModelForCausalLM.from_pretrained(str(resolve(merged.location) / "model"))
    base = AutoModelForCausalLM.from_pretrained(str(resolve("models/tiny-llama")))
    adapted = PeftModel.from_pretrained(base, str(resolve(version.location) / "adapter"))
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, adapted(ids).logits, atol=1e-4)
    page = client.get(_url("modelversion_detail", merged)).content.decode()
    assert 'data-testid="version-derived-from"' in page
    assert "no LoRA to merge" in page  # a merged model is not merged again


def test_a_missing_base_model_is_refused_with_the_reason(client, alice, version):
    import shutil

    shutil.rmtree(resolve("models/tiny-llama"))
    client.force_login(alice)
    page = client.get(_url("modelversion_detail", version)).content.decode()
    assert "no longer at" in page and 'data-testid="export-button"' not in page
    answer = client.post(_url("modelversion_export", version), follow=True)
    assert "no longer at" in answer.content.decode()
    assert not ModelExport.objects.exists()


def test_a_failed_merge_says_so_and_leaves_nothing_behind(alice, version, monkeypatch):
    (resolve(version.location) / "adapter" / "adapter_model.safetensors").write_bytes(b"junk")
    export = ModelExport.objects.create(source=version, requested_by=alice)
    assert exports.run_export(export.pk)
    export.refresh_from_db()
    assert export.status == "failed" and export.reason_text == "The merge failed."
    assert export.detail and export.result is None
    repo = resolve(version.repo.location)
    assert not any(
        p.name.startswith((f"export-{export.pk}", f".export-{export.pk}")) for p in repo.iterdir()
    )
    assert ModelVersion.objects.count() == 1


def test_lost_and_abandoned_exports_are_taken_up_again_then_given_up(alice, version, monkeypatch):
    queued = []
    monkeypatch.setattr(exports, "_enqueue", queued.append)
    lost = ModelExport.objects.create(source=version, requested_by=alice)
    long_ago = timezone.now() - timedelta(seconds=modelwork.SILENT_SECONDS + 5)
    ModelExport.objects.filter(pk=lost.pk).update(created_at=long_ago)
    assert exports.sweep() == [lost.pk] and queued == [lost.pk]
    # a worker that claimed it and died: silent since, so another takes it over
    ModelExport.objects.filter(pk=lost.pk).update(
        status="running", beat_at=long_ago, attempts=modelwork.MAX_ATTEMPTS
    )
    assert exports.sweep() == [lost.pk]
    exports.run_export(lost.pk)  # given up, not run a fourth time
    lost.refresh_from_db()
    assert lost.status == "failed" and "stopped 3 times" in lost.reason_text
    # one under way with a live worker is left alone
    live = ModelExport.objects.create(source=version, requested_by=alice)
    ModelExport.objects.filter(pk=live.pk).update(status="running", beat_at=timezone.now())
    assert exports.sweep() == [] and not exports.run_export(live.pk)


def test_the_job_page_and_its_events_lead_to_the_version(client, alice, bob, project, version):
    from finetune import access
    from finetune.models import Job, JobStatus
    from finetune.states import transition

    job = factories.job(project, alice, model_repo=version.repo)
    access.set_access(job, Access.READ_ONLY)
    transition(job, JobStatus.RUNNING)
    transition(job, JobStatus.SUCCEEDED, changes={"output_version": version})
    ModelVersion.objects.filter(pk=version.pk).update(job=job)
    link = _url("modelversion_detail", version)
    client.force_login(bob)
    detail = reverse("finetune:job_detail", args=[job.pk])
    assert link in client.get(detail).content.decode()
    assert link in client.get(detail + "?tab=events").content.decode()
    assert link in client.get(reverse("finetune:job_events", args=[job.pk])).content.decode()
    page = client.get(link).content.decode()
    assert reverse("finetune:job_detail", args=[job.pk]) in page
    access.set_access(version.repo, Access.NONE)  # the job is shared, its repo is not
    assert link not in client.get(detail).content.decode()
    access.set_access(version.repo, Access.READ_ONLY)
    access.set_access(job, Access.NONE)
    page = client.get(link).content.decode()
    assert "not shared with you" in page and job.name not in page
    assert Job.objects.get(pk=job.pk).output_version == version


def test_a_new_job_goes_on_from_a_version_of_its_base_model(client, alice, project, version, ready):
    from finetune.catalog_sync import sync_catalog
    from finetune.models import Job, PretrainedModel
    from tests.finetune import pages_support as support

    sync_catalog()
    client.force_login(alice)
    page = client.get(_url("modelversion_detail", version)).content.decode()
    start = f"{reverse('finetune:job_create')}?from_version={version.pk}"
    assert start.replace("&", "&amp;") in page or start in page
    form = client.get(start).content.decode()
    assert f'<option value="{version.pk}" selected>' in form  # 从已训练版本继续, chosen
    dataset, repo, spec = ready
    tiny = PretrainedModel.objects.get(name="tiny-llama")  # the catalogue's, put where it is
    PretrainedModel.objects.filter(pk=tiny.pk).update(location="models/tiny-llama")
    tiny.refresh_from_db()
    other = PretrainedModel.objects.create(name="other", task_type="llm", location="models/other")
    resolve("models/other").mkdir(parents=True)
    post = support.job_post(
        dataset, repo, spec, model=other, **{"param-start_from": str(version.pk)}
    )
    refused = client.post(reverse("finetune:job_create"), post)
    assert refused.status_code == 400
    assert "was trained from the base model tiny-llama" in refused.content.decode()
    post = support.job_post(
        dataset, repo, spec, model=tiny, **{"param-start_from": str(version.pk)}
    )
    assert client.post(reverse("finetune:job_create"), post).status_code == 302
    job = Job.objects.get()
    assert job.parameters["start_from"] == {"model_version": version.pk}
    from scheduler.launching import trainer_parameters

    assert trainer_parameters(job)["start_from"] == str(resolve(version.location))


def test_an_evaluation_measures_the_version_beside_its_base_on_the_page(
    client, alice, bob, project, version, monkeypatch, django_capture_on_commit_callbacks
):
    from finetune.models import ModelEvaluation
    from finetune.services import evaluations
    from tests.finetune import pages_support as support

    queued = []
    monkeypatch.setattr(evaluations, "_enqueue", queued.append)
    dataset = support.good_dataset(project, alice, name="held-out")
    client.force_login(alice)
    page = client.get(_url("modelversion_detail", version)).content.decode()
    assert 'data-testid="evaluate-button"' in page and "held-out" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url("modelversion_evaluate", version), {"dataset": dataset.pk})
    evaluation = ModelEvaluation.objects.get()
    assert queued == [evaluation.pk] and evaluation.dataset_name == "held-out"
    assert evaluations.run_evaluation(evaluation.pk)  # what the worker does
    evaluation.refresh_from_db()
    assert evaluation.status == "succeeded", evaluation.detail
    sides = evaluation.results["sides"]
    assert sides["version"]["loss"] != sides["base"]["loss"]
    client.force_login(bob)  # read-only: sees the results, may not ask for more
    page = client.get(_url("modelversion_detail", version)).content.decode()
    assert (
        'data-testid="evaluation-figures"' in page and 'data-testid="evaluate-button"' not in page
    )
    assert f"{sides['version']['perplexity']:.4f}".rstrip("0")[:6] in page
    assert (
        client.post(_url("modelversion_evaluate", version), {"dataset": dataset.pk}).status_code
        == 403
    )


def test_an_evaluation_on_data_one_may_not_use_is_refused(client, alice, bob, project, version):
    from finetune.models import ModelEvaluation
    from tests.finetune import pages_support as support

    theirs = support.good_dataset(project, bob, level=Access.NONE, name="bobs")
    images = factories.dataset(
        project, alice, name="pictures", scenario=factories.scenario("t2i/finetune")
    )
    client.force_login(alice)
    for dataset in (theirs, images):
        answer = client.post(
            _url("modelversion_evaluate", version), {"dataset": dataset.pk}, follow=True
        )
        assert "Choose a data set of this scenario that you may use" in answer.content.decode()
    answer = client.post(_url("modelversion_evaluate", version), {"dataset": "x"}, follow=True)
    assert "Choose a data set" in answer.content.decode()
    assert not ModelEvaluation.objects.exists()


def test_a_merge_past_its_time_limit_is_killed_and_failed_with_the_reason(alice, version, settings):
    settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS = 0.5  # the tiny merge takes seconds
    export = ModelExport.objects.create(source=version, requested_by=alice)
    assert exports.run_export(export.pk)
    export.refresh_from_db()
    assert export.status == "failed" and "time limit" in export.reason_text
    assert ModelVersion.objects.count() == 1
    repo = resolve(version.repo.location)
    assert not any(p.name.endswith(f"export-{export.pk}.partial") for p in repo.iterdir())


def test_a_worker_taken_over_writes_nothing_more(alice, version):
    export = ModelExport.objects.create(source=version, requested_by=alice)
    first = modelwork.claim(ModelExport, export.pk)
    long_ago = timezone.now() - timedelta(seconds=modelwork.SILENT_SECONDS + 5)
    ModelExport.objects.filter(pk=export.pk).update(beat_at=long_ago)  # it fell silent
    second = modelwork.claim(ModelExport, export.pk)
    assert (first, second) == (1, 2)
    from finetune.texts import say

    modelwork.fail(ModelExport, export.pk, first, say("late words"))  # the first wakes up
    assert not modelwork.succeed(ModelExport, export.pk, first)
    export.refresh_from_db()
    assert export.status == "running" and export.attempts == 2
    assert modelwork.succeed(ModelExport, export.pk, second)


def test_a_lost_request_is_asked_for_again_once_a_period(alice, version, monkeypatch):
    queued = []
    monkeypatch.setattr(exports, "_enqueue", queued.append)
    lost = ModelExport.objects.create(source=version, requested_by=alice)
    long_ago = timezone.now() - timedelta(seconds=modelwork.SILENT_SECONDS + 5)
    ModelExport.objects.filter(pk=lost.pk).update(created_at=long_ago)
    assert exports.sweep() == [lost.pk]
    assert exports.sweep() == []  # not again until another period has passed
    assert queued == [lost.pk]


def test_a_merge_given_up_leaves_nothing_half_written(alice, version, monkeypatch):
    monkeypatch.setattr(exports, "_enqueue", lambda pk: None)
    export = ModelExport.objects.create(source=version, requested_by=alice)
    staged = resolve(version.repo.location) / f".export-{export.pk}.partial"
    (staged / "model").mkdir(parents=True)  # a worker died while writing, three times
    long_ago = timezone.now() - timedelta(seconds=modelwork.SILENT_SECONDS + 5)
    ModelExport.objects.filter(pk=export.pk).update(
        status="running", beat_at=long_ago, attempts=modelwork.MAX_ATTEMPTS
    )
    exports.run_export(export.pk)  # given up
    assert ModelExport.objects.get(pk=export.pk).status == "failed"
    exports.sweep()
    assert not staged.exists()
