"""Project isolation of files and models (issue 11): what a member may name, read and write.

alice and bob are in `demo`, charlie in `research`. Every path a member names must
land inside their project's own areas (datasets/<id>/, repos/<id>/) or a shared,
read-only folder an operator declares; refusals say the same whether the path
exists or not; saving into a repo needs the right to change it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from accounts.models import Access
from finetune import access
from finetune.models import Dataset, Job, ModelRepo, ModelVersion
from finetune.storage import resolve
from scheduler.launching import trainer_parameters
from tests import factories
from tests.finetune import pages_support as support
from trainer.samples import write_sample_dataset

pytestmark = pytest.mark.django_db


def _root() -> Path:
    return Path(settings.DATA_ROOT)


def _register_data(client, path: str, scenario: str = "llm/sft"):
    data = {
        "name": "probe",
        "scenario": factories.scenario(scenario).pk,
        "access": Access.READ_ONLY,
        "path": path,
    }
    return client.post(reverse("finetune:dataset_create"), data)


def _register_repo(client, path: str):
    data = {
        "name": "probe-repo",
        "scenario": factories.scenario().pk,
        "access": Access.READ_ONLY,
        "path": path,
    }
    return client.post(reverse("finetune:modelrepo_create"), data)


def _refusal(response) -> str:
    assert response.status_code == 400
    return response.context["form"].errors["path"][0]


def _alices_data(project, alice, level=Access.NONE) -> Dataset:
    location = f"datasets/{project.pk}/private/data.jsonl"
    write_sample_dataset("sft_messages", _root() / location, rows=6)
    return factories.dataset(project, alice, level=level, name="private", location=location)


def test_it_refuses_a_data_set_path_in_another_project(client, project, alice, charlie):
    secret = _alices_data(project, alice)
    client.force_login(charlie)
    refusal = _refusal(_register_data(client, secret.location))
    research = charlie.projects.get()
    assert f"datasets/{research.pk}/" in refusal
    assert Dataset.objects.filter(project=research).count() == 0


def test_the_refusal_does_not_tell_whether_a_path_exists(client, project, alice, charlie):
    secret = _alices_data(project, alice)
    client.force_login(charlie)
    existing = _refusal(_register_data(client, secret.location))
    missing = _refusal(_register_data(client, f"datasets/{project.pk}/nothing-here.jsonl"))
    assert existing == missing


@pytest.mark.parametrize(
    "name",
    [
        "secret_key",
        "jingtiao.sqlite3",
        "jobs/{job}/spec.json",
        "logs/web.log",
        "broker/messages/x.msg",
        "cache/x.djcache",
        "models/tiny-llama",
        "repos/{project}/sft",
        "/etc/passwd",
        "../../etc/passwd",
        "datasets/{project}/../../secret_key",
        "datasets/{project}",
        "datasets/{project}/a\x00b",
        "",
    ],
)
def test_it_refuses_platform_files_as_data(client, project, alice, name):
    job = factories.job(project, alice)
    for path in ("secret_key", f"jobs/{job.pk}/spec.json", "logs/web.log", "models/tiny-llama"):
        (_root() / path).parent.mkdir(parents=True, exist_ok=True)
        (_root() / path).write_text('{"text": "PLATFORM-SECRET-7f3a"}\n')
    client.force_login(alice)
    before = Dataset.objects.count()
    response = _register_data(client, name.format(job=job.pk, project=project.pk))
    assert response.status_code == 400
    assert Dataset.objects.count() == before
    page = response.content.decode()
    assert "PLATFORM-SECRET" not in page and "1 valid" not in page


def test_a_link_out_of_the_project_area_is_refused(client, project, alice):
    area = _root() / f"datasets/{project.pk}"
    area.mkdir(parents=True)
    (_root() / "secret_key").write_text("k")
    os.symlink(_root() / "secret_key", area / "looks-harmless.jsonl")
    client.force_login(alice)
    assert _refusal(_register_data(client, f"datasets/{project.pk}/looks-harmless.jsonl"))
    assert not Dataset.objects.exists()


def test_a_data_set_in_the_project_area_is_accepted(client, project, alice):
    location = f"datasets/{project.pk}/mine/data.jsonl"
    write_sample_dataset("sft_messages", _root() / location, rows=4)
    client.force_login(alice)
    response = _register_data(client, location)
    assert response.status_code == 302
    assert Dataset.objects.get().location == location


def test_a_shared_data_folder_is_read_by_every_project_but_not_written(
    client, settings, project, alice, charlie
):
    settings.JINGTIAO_SHARED_DATA_DIRS = ["shared/corpora"]
    write_sample_dataset("sft_messages", _root() / "shared/corpora/chat.jsonl", rows=4)
    for user in (alice, charlie):
        client.force_login(user)
        response = _register_data(client, "shared/corpora/chat.jsonl")
        assert response.status_code == 302
    assert Dataset.objects.count() == 2
    refusal = _refusal(_register_repo(client, "shared/corpora/models"))
    assert "shared/corpora/" not in refusal
    assert not (_root() / "shared/corpora/models").exists()


@pytest.mark.parametrize(
    "name",
    [
        "repos/{other}/alices",
        "models/tiny-llama",
        "jobs/2",
        "jobs/99999",
        "staticfiles",
        "secret_key",
        "datasets/{mine}/x",
        "repos/{mine}",
        "/tmp/anywhere",
    ],
)
def test_it_refuses_a_repo_path_outside_the_project(client, project, other_project, charlie, name):
    (_root() / "secret_key").write_text("k")
    client.force_login(charlie)
    path = name.format(other=project.pk, mine=other_project.pk)
    refusal = _refusal(_register_repo(client, path))
    assert f"repos/{other_project.pk}/" in refusal
    assert not ModelRepo.objects.exists()
    assert not (_root() / "jobs/99999").exists()


def test_it_refuses_a_repo_folder_that_is_a_file_or_another_repos(client, project, alice):
    area = _root() / f"repos/{project.pk}"
    area.mkdir(parents=True)
    (area / "notes.txt").write_text("x")
    factories.model_repo(project, alice, location=f"repos/{project.pk}/shared-models")
    client.force_login(alice)
    assert "A file exists" in _refusal(_register_repo(client, f"repos/{project.pk}/notes.txt"))
    for inside_or_around in ("shared-models", "shared-models/v2"):
        refusal = _refusal(_register_repo(client, f"repos/{project.pk}/{inside_or_around}"))
        assert "Another save-model address already uses this folder." in refusal
    assert ModelRepo.objects.count() == 1


def test_a_repo_is_accepted_in_the_project_area(client, project, alice):
    client.force_login(alice)
    response = _register_repo(client, f"repos/{project.pk}/team/chat")
    assert response.status_code == 302
    assert (_root() / f"repos/{project.pk}/team/chat").is_dir()


def test_two_repo_names_of_one_folder_name_get_two_folders(client, project, alice):
    client.force_login(alice)
    for name in ("Chat Models", "chat-models"):
        data = {"name": name, "scenario": factories.scenario().pk, "access": Access.READ_ONLY}
        assert client.post(reverse("finetune:modelrepo_create"), data).status_code == 302
    locations = set(ModelRepo.objects.values_list("location", flat=True))
    assert locations == {f"repos/{project.pk}/chat-models", f"repos/{project.pk}/chat-models-2"}


# --- writes need write access -------------------------------------------------------


def _create_form_setup(project, alice, repo_level):
    support.catalog()
    dataset = support.good_dataset(project, alice, level=Access.READ_WRITE)
    repo = factories.model_repo(project, alice, level=repo_level, name="alices-repo")
    spec = factories.node_spec()
    support.node()
    return dataset, repo, spec


def test_a_read_only_member_cannot_save_into_a_repo(client, project, alice, bob):
    dataset, repo, spec = _create_form_setup(project, alice, Access.READ_ONLY)
    client.force_login(bob)
    page = client.get(reverse("finetune:job_create"))
    assert repo not in page.context["form"].fields["model_repo"].queryset
    response = client.post(reverse("finetune:job_create"), support.job_post(dataset, repo, spec))
    assert response.status_code == 400
    assert "model_repo" in response.context["form"].errors
    assert not Job.objects.exists()


def test_a_read_write_member_and_the_creator_may_save_into_a_repo(client, project, alice, bob):
    dataset, repo, spec = _create_form_setup(project, alice, Access.READ_WRITE)
    for user in (alice, bob):
        client.force_login(user)
        post = support.job_post(dataset, repo, spec, name=f"run-{user}")
        assert client.post(reverse("finetune:job_create"), post).status_code == 302
    assert Job.objects.count() == 2


def test_the_service_refuses_a_repo_the_user_may_only_view(project, alice, bob):
    from django.core.exceptions import ValidationError

    from finetune.services.jobs import JobDraft, check_draft

    dataset, repo, spec = _create_form_setup(project, alice, Access.READ_ONLY)
    draft = JobDraft(
        name="x",
        scenario=dataset.scenario,
        algorithm=factories.algorithm(),
        pretrained_model=factories.pretrained_model(),
        train_dataset=dataset,
        model_repo=repo,
        node_specs=[spec],
        duration=settings.JINGTIAO_DEFAULT_DURATION,
    )
    with pytest.raises(ValidationError) as refused:
        check_draft(bob, project, draft)
    assert "needs read-write access" in str(refused.value.message_dict["model_repo"])


def test_validating_someone_elses_read_only_data_set_is_forbidden(client, project, alice, bob):
    dataset = support.good_dataset(project, alice, level=Access.READ_ONLY)
    before = dataset.validated_at
    client.force_login(bob)
    response = client.post(reverse("finetune:dataset_validate", args=[dataset.pk]))
    assert response.status_code == 403
    dataset.refresh_from_db()
    assert dataset.validated_at == before


# --- the admin changes access as the pages do ----------------------------------------


def _admin_change(admin, obj, **changes):
    """The admin's change form of `obj`, posted with `changes`: its errors, or {} once
    the admin saved it (its own save_model, as a click on Save runs it)."""
    from django.contrib import admin as django_admin
    from django.forms import JSONField
    from django.forms.models import model_to_dict
    from django.test import RequestFactory

    model_admin = django_admin.site._registry[type(obj)]
    request = RequestFactory().post("/")
    request.user = admin
    form_class = model_admin.get_form(request, obj, change=True)
    data = {**model_to_dict(obj, fields=form_class.base_fields), **changes}
    data = {
        # JSON fields post their text, as the browser sends it.
        name: json.dumps(value) if isinstance(form_class.base_fields[name], JSONField) else value
        for name, value in data.items()
        if value is not None
    }
    form = form_class(data, instance=type(obj).objects.get(pk=obj.pk))
    if not form.is_valid():
        return form.errors
    model_admin.save_model(request, form.save(commit=False), form, change=True)
    return {}


def test_the_admin_moves_the_grants_with_a_data_sets_access(admin, project, alice, bob):
    dataset = support.good_dataset(project, alice, level=Access.READ_WRITE)
    assert access.can(bob, "view", dataset)
    assert _admin_change(admin, dataset, access=Access.NONE) == {}
    dataset.refresh_from_db()
    assert dataset.access == Access.NONE
    assert not access.can(bob, "view", dataset)
    assert access.can(alice, "change", dataset)


def test_the_admin_moves_the_grants_with_a_repos_access(admin, project, alice, bob):
    repo = factories.model_repo(project, alice, level=Access.NONE)
    assert _admin_change(admin, repo, access=Access.READ_WRITE) == {}
    assert access.can(bob, "change", ModelRepo.objects.get(pk=repo.pk))


def test_the_admin_may_not_open_a_job_beyond_what_it_uses(admin, project, alice, bob):
    data = factories.dataset(project, alice, level=Access.READ_ONLY)
    job = factories.job(project, alice, level=Access.NONE, train_dataset=data)
    assert "access" in _admin_change(admin, job, access=Access.READ_WRITE)
    assert _admin_change(admin, job, access=Access.READ_ONLY) == {}
    job.refresh_from_db()
    assert access.can(bob, "clone", job) and not access.can(bob, "stop", job)


def test_the_admin_refuses_a_location_outside_the_project(admin, project, alice):
    dataset = support.good_dataset(project, alice)
    assert "location" in _admin_change(admin, dataset, location="secret_key")
    location = f"datasets/{project.pk}/elsewhere.jsonl"
    assert _admin_change(admin, dataset, location=location) == {}


# --- a reward model is a model version the user may view, not a path -----------------


def _reward_model(project, creator, level=Access.READ_ONLY, name="judge") -> ModelVersion:
    repo = factories.model_repo(
        project,
        creator,
        level=level,
        name=name,
        scenario=factories.scenario("llm/reward_model"),
        location=f"repos/{project.pk}/{name}",
    )
    return ModelVersion.objects.create(
        repo=repo, number=1, location=f"repos/{project.pk}/{name}/job-1"
    )


def _grpo_setup(project, alice):
    support.catalog()
    prompts = f"datasets/{project.pk}/prompts.jsonl"
    write_sample_dataset("prompts", _root() / prompts, rows=8)
    rl = factories.scenario("llm/rl")
    dataset = factories.dataset(
        project, alice, name="prompts", scenario=rl, format="prompts", location=prompts
    )
    repo = factories.model_repo(project, alice, name="rl-out", scenario=rl)
    spec = factories.node_spec()
    support.node()
    return dataset, repo, spec


def _grpo_post(dataset, repo, spec, **params):
    post = support.job_post(dataset, repo, spec, algorithm_code="grpo")
    post.update({f"param-{name}": value for name, value in params.items()})
    return post


def test_grpo_offers_the_reward_models_the_user_may_view(
    client, project, other_project, alice, bob, charlie
):
    dataset, repo, spec = _grpo_setup(project, alice)
    visible = _reward_model(project, alice, level=Access.READ_ONLY, name="shared-judge")
    hidden = _reward_model(project, alice, level=Access.NONE, name="private-judge")
    elsewhere = _reward_model(other_project, charlie, name="their-judge")
    client.force_login(bob)
    post = _grpo_post(dataset, repo, spec, reward_kind="reward_model")
    post["_refresh"] = "1"
    form = client.post(reverse("finetune:job_create"), post).context["form"]
    field = form.parameters.fields["reward_model_path"]
    assert list(field.queryset) == [visible]
    assert hidden not in field.queryset and elsewhere not in field.queryset


@pytest.mark.parametrize("value", ["/abs/path/of/another/job", "{hidden}", "{elsewhere}", "x"])
def test_grpo_refuses_a_reward_model_the_user_may_not_view(
    client, project, other_project, alice, bob, charlie, value
):
    dataset, repo, spec = _grpo_setup(project, alice)
    hidden = _reward_model(project, alice, level=Access.NONE, name="private-judge")
    elsewhere = _reward_model(other_project, charlie, name="their-judge")
    client.force_login(bob)
    chosen = value.format(hidden=hidden.pk, elsewhere=elsewhere.pk)
    post = _grpo_post(dataset, repo, spec, reward_kind="reward_model", reward_model_path=chosen)
    response = client.post(reverse("finetune:job_create"), post)
    assert response.status_code == 400
    assert "reward_model_path" in response.context["form"].parameters.errors
    assert not Job.objects.exists()


def test_grpo_stores_the_reward_model_chosen_and_the_launch_gives_its_folder(
    client, project, alice
):
    dataset, repo, spec = _grpo_setup(project, alice)
    judge = _reward_model(project, alice)
    client.force_login(alice)
    post = _grpo_post(
        dataset, repo, spec, reward_kind="reward_model", reward_model_path=str(judge.pk)
    )
    response = client.post(reverse("finetune:job_create"), post)
    assert response.status_code == 302, response.context["form"].parameters.errors
    job = Job.objects.get()
    assert job.parameters["reward_model_path"] == {"model_version": judge.pk}
    assert trainer_parameters(job)["reward_model_path"] == str(_root() / judge.location)
    detail = client.get(reverse("finetune:job_detail", args=[job.pk])).content.decode()
    assert "judge v1" in detail
    clone = client.get(reverse("finetune:job_clone", args=[job.pk])).context["form"]
    assert clone.parameters.initial["reward_model_path"] == judge.pk


def test_grpo_with_a_reward_model_reward_needs_one_chosen(client, project, alice):
    dataset, repo, spec = _grpo_setup(project, alice)
    client.force_login(alice)
    response = client.post(
        reverse("finetune:job_create"),
        _grpo_post(dataset, repo, spec, reward_kind="reward_model"),
    )
    assert response.status_code == 400
    assert "reward_model_path" in response.context["form"].parameters.errors


def test_grpo_refuses_an_invalid_reward_regex_before_queueing(client, project, alice):
    dataset, repo, spec = _grpo_setup(project, alice)
    client.force_login(alice)
    response = client.post(
        reverse("finetune:job_create"),
        _grpo_post(dataset, repo, spec, reward_kind="regex", reward_pattern="(unclosed"),
    )
    assert response.status_code == 400
    errors = response.context["form"].parameters.errors["reward_pattern"]
    assert "Not a valid regular expression" in errors[0]
    assert not Job.objects.exists()


def test_a_job_is_no_more_open_than_its_reward_model(client, project, alice):
    from django.core.exceptions import ValidationError

    from finetune.services.jobs import JobDraft, check_draft

    dataset, repo, spec = _grpo_setup(project, alice)
    judge = _reward_model(project, alice, level=Access.NONE)
    from finetune.models import Algorithm

    grpo = Algorithm.objects.get(code="grpo")
    draft = JobDraft(
        name="x",
        scenario=grpo.scenario,
        algorithm=grpo,
        pretrained_model=factories.pretrained_model(),
        train_dataset=dataset,
        model_repo=repo,
        node_specs=[spec],
        duration=settings.JINGTIAO_DEFAULT_DURATION,
        access=Access.READ_ONLY,
        parameters={
            "reward_kind": "reward_model",
            "reward_model_path": {"model_version": judge.pk},
        },
    )
    with pytest.raises(ValidationError) as refused:
        check_draft(alice, project, draft)
    assert "judge" in str(refused.value.message_dict["access"])


# --- what a review found (issue 11) ---------------------------------------------------


def test_a_job_refuses_a_data_set_whose_files_lie_outside_the_project(
    client, project, alice, ready
):
    """A row registered before the areas existed (or edited behind the platform's back)
    is refused when a job would use it, and at launch."""
    from scheduler.executors.base import ExecutorError
    from scheduler.launching import trainer_spec

    dataset, repo, spec = ready
    Dataset.objects.filter(pk=dataset.pk).update(location="jobs/1/spec.json")
    client.force_login(alice)
    response = client.post(reverse("finetune:job_create"), support.job_post(dataset, repo, spec))
    assert response.status_code == 400
    assert f"datasets/{project.pk}/" in response.context["form"].errors["train_dataset"][0]
    job = factories.job(project, alice, train_dataset=Dataset.objects.get(pk=dataset.pk))
    with pytest.raises(ExecutorError) as refused:
        trainer_spec(job, "token")
    assert not refused.value.transient


def test_a_folder_replaced_by_a_link_after_registration_is_refused(client, project, alice, ready):
    dataset, repo, spec = ready
    elsewhere = _root() / "logs"
    elsewhere.mkdir()
    target = _root() / dataset.location
    target.unlink()
    os.symlink(elsewhere / "web.log", target)
    client.force_login(alice)
    response = client.post(reverse("finetune:job_create"), support.job_post(dataset, repo, spec))
    assert response.status_code == 400
    assert "train_dataset" in response.context["form"].errors


def test_a_member_cannot_register_a_colleagues_private_data_again(client, project, alice, bob):
    secret = _alices_data(project, alice, level=Access.NONE)
    client.force_login(bob)
    for path in (secret.location, str(Path(secret.location).parent)):
        refusal = _refusal(_register_data(client, path))
        assert refusal == "This path holds the files of a data set you may not use."
    assert Dataset.objects.count() == 1
    client.force_login(alice)  # the owner may register her own files again
    assert _register_data(client, secret.location).status_code == 302


def test_the_admin_keeps_a_job_no_more_open_than_its_reward_model(admin, project, alice):
    from finetune.models import Algorithm

    dataset, repo, _spec = _grpo_setup(project, alice)
    judge = _reward_model(project, alice, level=Access.NONE)
    job = factories.job(
        project,
        alice,
        level=Access.NONE,
        algorithm=Algorithm.objects.get(code="grpo"),
        scenario=dataset.scenario,
        train_dataset=dataset,
        model_repo=repo,
        parameters={
            "reward_kind": "reward_model",
            "reward_model_path": {"model_version": judge.pk},
        },
    )
    assert "access" in _admin_change(admin, job, access=Access.READ_ONLY)


def test_a_failed_creation_leaves_no_row_and_only_its_own_folder_goes(project, alice, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from finetune.services import data as services

    neighbour = _root() / f"datasets/{project.pk}/neighbour/data.jsonl"
    write_sample_dataset("sft_messages", neighbour, rows=2)

    def broken(*args, **kwargs):
        raise RuntimeError("the grants could not be written")

    monkeypatch.setattr(services.access, "share_new", broken)
    upload = SimpleUploadedFile("chat.jsonl", neighbour.read_bytes())
    with pytest.raises(RuntimeError):
        services.create_dataset(
            alice,
            project,
            name="fresh",
            scenario=factories.scenario(),
            level=Access.NONE,
            upload=upload,
        )
    assert not Dataset.objects.exists()
    assert not (_root() / f"datasets/{project.pk}/fresh").exists()
    assert neighbour.exists()


def test_a_validator_that_breaks_leaves_the_data_set_invalid_saying_why(
    project, alice, monkeypatch
):
    from finetune.services import validation

    dataset = support.good_dataset(project, alice)

    def broken(*args, **kwargs):
        raise RuntimeError("the validator broke")

    monkeypatch.setattr(validation.datavalidation, "validate", broken)
    validation.validate_now(dataset.pk)
    dataset.refresh_from_db()
    assert dataset.validation_status == Dataset.Validation.INVALID
    problems = dataset.validation_report["problems"]
    assert [p["problem"] for p in problems] == [
        "the validator failed: RuntimeError: the validator broke"
    ]
    assert resolve(dataset.location).exists()  # the files are the user's: kept


def test_a_shared_folder_that_links_into_the_projects_areas_is_ignored(
    client, settings, project, alice, charlie
):
    _alices_data(project, alice)
    os.symlink(_root() / "datasets", _root() / "everything")
    settings.JINGTIAO_SHARED_DATA_DIRS = ["everything"]
    client.force_login(charlie)
    refusal = _refusal(_register_data(client, f"everything/{project.pk}/private/data.jsonl"))
    assert "everything/" not in refusal
    assert not Dataset.objects.filter(creator=charlie).exists()
