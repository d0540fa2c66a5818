"""Data validated once, in a worker: jobs use the kept verdict, and wait for one to come
(finetune/services/validation.py)."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from finetune import tasks
from finetune.models import Dataset, Job, JobEvent, JobStatus
from finetune.services import jobs as services
from finetune.services import validation
from finetune.storage import resolve
from scheduler import snapshot
from tests import factories
from tests.finetune import pages_support as support
from tests.finetune.test_services import _draft
from trainer import jsonl

pytestmark = pytest.mark.django_db


def _unvalidated(project, alice, rows=6, bad=False) -> Dataset:
    """A data set just registered: its file is there, no worker has read it yet."""
    location = f"datasets/{project.pk}/fresh.jsonl"
    path = resolve(location)
    support.write_sample_dataset("sft_messages", path, rows=rows)
    if bad:
        with path.open("a") as handle:
            handle.write("not json\n")
    return factories.dataset(project, alice, name="fresh", location=location)


def _latest_request(dataset: Dataset) -> int:
    return Dataset.objects.values_list("validation_requests", flat=True).get(pk=dataset.pk)


@pytest.fixture
def parsed(monkeypatch):
    """The data files read row by row from here on, by anyone."""
    from trainer import datavalidation

    found = []
    real = jsonl.file_rows

    @functools.wraps(real)
    def spy(file, meter=None):
        found.append(file.name)
        return real(file, meter)

    monkeypatch.setattr(datavalidation, "file_rows", spy)
    return found


def test_creating_a_job_reads_no_row_of_data_already_validated(project, alice, parsed):
    draft = _draft(project, alice)
    parsed.clear()  # what the validation of the draft's data set read
    job = services.create_job(alice, project, draft)
    assert parsed == []
    assert job.status == JobStatus.QUEUED and not job.waiting_for_data


def test_a_job_on_data_being_validated_waits_and_takes_its_place_once_it_is_good(
    project, alice, signals, django_capture_on_commit_callbacks
):
    dataset = _unvalidated(project, alice)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.create_job(alice, project, _draft(project, alice, train_dataset=dataset))
    assert job.status == JobStatus.QUEUED and job.waiting_for_data
    assert "Waiting for data set “fresh” to be validated" in [e.message for e in job.events.all()]
    state = snapshot.take(timezone.now())
    assert job.pk not in {queued.job_id for queued in state.queue}  # the planner passes it by

    with django_capture_on_commit_callbacks(execute=True):
        tasks.validate_dataset(dataset.pk, _latest_request(dataset))
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and not job.waiting_for_data
    assert job.events.filter(kind=JobEvent.Kind.NOTE, message__startswith="Its data was").exists()
    assert (job.pk, "data_ready") in signals  # an admission pass follows
    state = snapshot.take(timezone.now())
    queued = next(q for q in state.queue if q.job_id == job.pk)
    assert queued.queued_at == job.queued_at  # its place is where it was created


def test_a_job_whose_data_turns_out_bad_fails_with_the_report(project, alice):
    dataset = _unvalidated(project, alice, bad=True)
    job = services.create_job(alice, project, _draft(project, alice, train_dataset=dataset))
    assert job.waiting_for_data
    tasks.validate_dataset(dataset.pk, _latest_request(dataset))
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "The data set “fresh” has 1 problem(s); see its report"
    failed = job.events.get(to_status=JobStatus.FAILED)
    assert failed.data == {"dataset": dataset.pk}


def test_a_data_set_known_to_be_bad_is_refused_at_once(project, alice, parsed):
    draft = _draft(project, alice, train_dataset=support.bad_dataset(project, alice))
    parsed.clear()
    with pytest.raises(services.DataSetRejected):
        services.create_job(alice, project, draft)
    assert parsed == []  # the kept verdict, not a second reading
    assert not Job.objects.exists()


def test_data_changed_since_its_verdict_is_validated_again_reading_only_what_changed(
    project, alice, parsed, django_capture_on_commit_callbacks
):
    folder = resolve(f"datasets/{project.pk}/shards")
    for index in range(3):
        support.write_sample_dataset(
            "sft_messages", folder / f"part-{index}.jsonl", rows=4, seed=index
        )
    dataset = support.validated(
        factories.dataset(project, alice, name="shards", location=f"datasets/{project.pk}/shards")
    )
    assert dataset.record_count == 12
    support.write_sample_dataset("sft_messages", folder / "part-1.jsonl", rows=9, seed=7)
    draft = _draft(project, alice, train_dataset=dataset)
    parsed.clear()
    job = services.create_job(alice, project, draft)
    assert job.waiting_for_data and parsed == []
    dataset.refresh_from_db()
    assert dataset.validation_status == Dataset.Validation.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        tasks.validate_dataset(dataset.pk, _latest_request(dataset))
    assert parsed == ["part-1.jsonl"]
    dataset.refresh_from_db()
    job.refresh_from_db()
    assert dataset.record_count == 17 and not job.waiting_for_data


def test_a_validation_overtaken_by_a_newer_request_writes_nothing(project, alice):
    dataset = _unvalidated(project, alice)
    validation.request_validation(dataset.pk)
    first = _latest_request(dataset)
    validation.request_validation(dataset.pk)
    assert validation.run_validation(dataset.pk, first) is False
    dataset.refresh_from_db()
    assert dataset.validation_status == Dataset.Validation.PENDING
    assert validation.run_validation(dataset.pk, first + 1) is True
    assert validation.run_validation(dataset.pk, first + 1) is False  # a message taken twice
    dataset.refresh_from_db()
    assert dataset.validation_status == Dataset.Validation.VALID


def test_a_file_changed_during_a_validation_is_judged_by_the_next_one(project, alice, monkeypatch):
    dataset = _unvalidated(project, alice)
    validation.request_validation(dataset.pk)
    first = _latest_request(dataset)
    real = validation.datavalidation.validate

    def meanwhile(*args, **kwargs):
        validation.request_validation(dataset.pk)  # the files changed, a page asked again
        return real(*args, **kwargs)

    monkeypatch.setattr(validation.datavalidation, "validate", meanwhile)
    assert validation.run_validation(dataset.pk, first) is False
    dataset.refresh_from_db()
    assert dataset.validation_status == Dataset.Validation.PENDING


def test_the_progress_of_a_validation_shows_on_its_row(project, alice, monkeypatch):
    dataset = _unvalidated(project, alice, rows=300)
    monkeypatch.setattr(validation, "BEAT_SECONDS", 0)
    monkeypatch.setattr(validation.datavalidation, "Meter", functools.partial(jsonl.Meter, every=0))
    seen = []
    real = validation._progress

    def watched(dataset_id, request):
        report = real(dataset_id, request)

        def progress(done, total):
            report(done, total)
            row = Dataset.objects.get(pk=dataset_id)
            seen.append((row.validation_status, row.validation_progress))

        return progress

    monkeypatch.setattr(validation, "_progress", watched)
    validation.validate_now(dataset.pk)
    shares = [share for _status, share in seen]
    assert len(seen) > 10 and {status for status, _share in seen} == {"validating"}
    assert shares == sorted(shares) and shares[0] > 0 and shares[-1] <= 0.99
    dataset.refresh_from_db()
    assert (dataset.validation_status, dataset.validation_progress) == ("valid", 1.0)


def test_the_sweep_asks_again_for_validations_nobody_carries_out(project, alice):
    lost = _unvalidated(project, alice)
    silent = factories.dataset(project, alice, name="silent")
    alive = factories.dataset(project, alice, name="alive")
    long_ago = timezone.now() - timedelta(seconds=validation.SILENT_SECONDS + 5)
    Dataset.objects.filter(pk=lost.pk).update(updated_at=long_ago)
    Dataset.objects.filter(pk=silent.pk).update(
        validation_status="validating", validation_beat_at=long_ago
    )
    Dataset.objects.filter(pk=alive.pk).update(
        validation_status="validating", validation_beat_at=timezone.now()
    )
    assert sorted(validation.sweep()) == sorted([lost.pk, silent.pk])
    assert _latest_request(silent) == 1 and _latest_request(alive) == 0


def test_a_job_created_as_its_data_was_judged_goes_on_at_the_next_sweep(project, alice):
    job = services.create_job(alice, project, _draft(project, alice))
    Job.objects.filter(pk=job.pk).update(waiting_for_data=True)  # judged in between
    tasks.sweep_validations()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and not job.waiting_for_data


def test_a_job_stopped_while_it_waits_for_its_data_stays_stopped(project, alice):
    dataset = _unvalidated(project, alice, bad=True)
    job = services.create_job(alice, project, _draft(project, alice, train_dataset=dataset))
    services.stop_job(alice, job)
    tasks.validate_dataset(dataset.pk, _latest_request(dataset))
    job.refresh_from_db()
    assert job.status == JobStatus.STOPPED and not job.waiting_for_data


def test_the_pages_say_a_job_waits_for_its_data(client, project, alice):
    dataset = _unvalidated(project, alice)
    job = services.create_job(alice, project, _draft(project, alice, train_dataset=dataset))
    client.force_login(alice)
    listed = client.get(reverse("finetune:job_list")).content.decode()
    assert "validating data" in listed
    detail = client.get(reverse("finetune:job_detail", args=[job.pk])).content.decode()
    assert "Validating data: it takes its place in the queue" in detail
    assert "Waiting to be validated" in detail  # beside the data set's name
