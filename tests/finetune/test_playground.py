"""The playground (issue 15, item 4): a question is queued, answered by the inference
worker's code on a real tiny model, streamed through the cache, and read back by the page;
the base model's answer beside it; refusals are clear; access follows the repo."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Access
from finetune import access
from finetune.models import PlaygroundRun
from finetune.services import playground
from tests import factories
from tests.finetune.test_model_versions import _tiny_version


@pytest.fixture(autouse=True)
def _fresh_models(monkeypatch):
    """Each test starts with no model loaded, as a worker just started."""
    monkeypatch.setattr(playground, "_models", None)


@pytest.fixture
def queued(monkeypatch):
    found: list[int] = []
    monkeypatch.setattr(playground, "_enqueue", found.append)
    return found


@pytest.fixture
def version(project, alice):
    repo = factories.model_repo(project, alice, Access.READ_ONLY, name="assistant")
    return _tiny_version(repo)


def _ask(client, version, **fields):
    data = {
        "prompt": "Hello there, who are you?",
        "history": "[]",
        "max_new_tokens": 12,
        "temperature": 0,
        "top_p": 0.9,
        "seed": 3,
        "compare": "on",
        **fields,
    }
    url = reverse("finetune:playground_ask", args=[version.repo_id, version.number])
    return client.post(url, data)


def _state(client, answer) -> dict:
    return client.get(answer.json()["state"]).json()


def test_a_question_is_answered_by_the_version_and_the_base_model_beside_it(
    client, bob, version, queued, django_capture_on_commit_callbacks
):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.storage import resolve

    client.force_login(bob)  # read-only on the repo: trying is viewing
    page = client.get(reverse("finetune:playground", args=[version.repo_id, version.number]))
    assert page.status_code == 200 and 'data-testid="playground"' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        answer = _ask(client, version)
    assert answer.status_code == 202 and queued == [answer.json()["run"]]
    waiting = _state(client, answer)
    assert waiting["status"] == "queued" and waiting["position"] == 1

    assert playground.answer(queued[0])  # the inference worker
    assert not playground.answer(queued[0])  # a second delivery finds it taken
    done = _state(client, answer)
    assert done["status"] == "done" and done["done"] == ["version", "base"]
    mine, base_said = done["sides"]["version"], done["sides"]["base"]
    assert mine and base_said and mine != base_said

    # the base side is the base model itself, the adapter switched off (greedy decoding)
    folder = resolve("models/tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve(version.location) / "adapter"))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello there, who are you?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = AutoModelForCausalLM.from_pretrained(str(folder)).generate(
            **ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    expected = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert base_said == expected
    assert playground.model_cache().loads == 1  # one load for both sides

    # the next turn carries the conversation; the model is still loaded
    history = json.dumps(
        [{"user": "Hello there, who are you?", "version": mine, "base": base_said}]
    )
    with django_capture_on_commit_callbacks(execute=True):
        second = _ask(client, version, prompt="And then?", history=history, compare="")
    playground.answer(queued[-1])
    answered = _state(client, second)
    assert answered["done"] == ["version"] and answered["sides"]["base"] == ""
    assert playground.model_cache().loads == 1


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"prompt": "x" * 9000}, "at most 8000 fit"),
        ({"prompt": "  "}, "This field is required"),
        ({"max_new_tokens": 0}, "greater than or equal to 1"),
        ({"max_new_tokens": 100000}, "less than or equal to 512"),
        ({"temperature": 5}, "less than or equal to 2"),
        ({"top_p": 0}, "greater than or equal to 0.01"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"history": "{not json"}, "Enter a valid JSON"),
        ({"history": '[{"user": 3}]'}, "not one the page writes"),
    ],
)
def test_bad_questions_are_refused_with_the_reason(client, alice, version, queued, fields, words):
    client.force_login(alice)
    answer = _ask(client, version, **fields)
    assert answer.status_code == 400
    assert words in json.dumps(answer.json()["errors"])
    assert not PlaygroundRun.objects.exists() and queued == []


def test_who_may_try_follows_the_repo_and_answers_are_the_askers(
    client, alice, bob, charlie, version, queued
):
    client.force_login(alice)
    answer = _ask(client, version)
    state_url = answer.json()["state"]
    client.force_login(bob)  # may try the version, may not read alice's answer
    assert client.get(state_url).status_code == 404
    access.set_access(version.repo, Access.NONE)
    for user in (bob, charlie):
        client.force_login(user)
        assert _ask(client, version).status_code == 404
        url = reverse("finetune:playground", args=[version.repo_id, version.number])
        assert client.get(url).status_code == 404
    assert PlaygroundRun.objects.count() == 1


def test_waiting_questions_show_their_place_and_are_given_up_with_the_reason(
    client, alice, version, queued, settings
):
    client.force_login(alice)
    first, second = _ask(client, version), _ask(client, version)
    assert (_state(client, first)["position"], _state(client, second)["position"]) == (1, 2)
    third = _ask(client, version)
    refused = _ask(client, version)  # three waiting already
    assert refused.status_code == 400 and "3 questions waiting" in json.dumps(refused.json())
    long_ago = timezone.now() - timedelta(seconds=settings.JINGTIAO_PLAYGROUND_WAIT_SECONDS + 1)
    PlaygroundRun.objects.filter(pk=first.json()["run"]).update(created_at=long_ago)
    lost = _state(client, first)
    assert (
        lost["status"] == "failed" and "No inference worker took the question up" in lost["error"]
    )
    assert not playground.answer(first.json()["run"])  # a late worker does not answer it
    # a worker that died while answering: failed once past the time limit
    PlaygroundRun.objects.filter(pk=second.json()["run"]).update(
        status="running", started_at=long_ago - timedelta(hours=1)
    )
    assert playground.give_up_overdue() == 1
    assert "stopped before it finished" in _state(client, second)["error"]
    assert _state(client, third)["position"] == 1


def test_a_missing_base_model_is_said_on_the_page(client, alice, version, queued):
    import shutil

    from finetune.storage import resolve

    shutil.rmtree(resolve("models/tiny-llama"))
    client.force_login(alice)
    page = client.get(reverse("finetune:playground", args=[version.repo_id, version.number]))
    assert 'data-testid="playground-refusal"' in page.content.decode()
    assert "not on the data volume" in json.dumps(_ask(client, version).json())


def test_the_model_cache_evicts_the_least_recently_used_by_memory(project, alice):
    from trainer.playground import Loaded, ModelCache

    made = []

    def loader(name):
        return lambda size: made.append(name) or Loaded("llm", name, None, False, size)

    models = ModelCache(budget_bytes=100)
    models.get("a", 60, loader("a"))
    models.get("b", 30, loader("b"))
    models.get("a", 60, loader("a"))  # still there: "b" is now the least recent
    models.get("c", 40, loader("c"))  # 60 + 30 + 40 > 100: "b" goes
    assert list(models.entries) == ["a", "c"] and made == ["a", "b", "c"]
    models.get("d", 90, loader("d"))  # only room for itself
    assert list(models.entries) == ["d"]


def test_an_image_version_draws_with_and_without_its_lora(
    client, alice, project, queued, django_capture_on_commit_callbacks
):
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from finetune.models import ModelVersion
    from finetune.storage import resolve
    from trainer.output import StagedOutput
    from trainer.tiny import build_tiny_t2i

    base = build_tiny_t2i(resolve("models/tiny-sd"))
    repo = factories.model_repo(
        project, alice, name="styles", scenario=factories.scenario("t2i/finetune")
    )
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(base), safety_checker=None, requires_safety_checker=False
    )
    pipeline.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"])
    )
    with torch.no_grad():
        for name, weight in pipeline.unet.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    staged = StagedOutput(resolve(f"{repo.location}/job-1"))
    staging = staged.prepare()
    StableDiffusionPipeline.save_lora_weights(
        save_directory=str(staging / "adapter"),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet)),
        safe_serialization=True,
    )
    final = staged.finish(
        {"model_kind": "t2i", "base_model": "models/tiny-sd", "artifacts": {"adapter": "adapter"}}
    )
    manifest = json.loads((final / "manifest.json").read_text())
    version = ModelVersion.objects.create(
        repo=repo, number=1, location=f"{repo.location}/job-1", manifest=manifest
    )
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        answer = _ask(client, version, prompt="a red square", seed=42)
    assert answer.status_code == 202
    playground.answer(queued[0])
    done = _state(client, answer)
    assert done["status"] == "done" and done["seed"] == 42
    pictures = {side: client.get(url) for side, url in done["image_urls"].items()}
    assert set(pictures) == {"version", "base"}
    for response in pictures.values():
        assert response["Content-Type"] == "image/png" and response.content[:4] == b"\x89PNG"
    assert pictures["version"].content != pictures["base"].content


def test_a_conversation_of_too_many_turns_is_refused(client, alice, version, queued):
    client.force_login(alice)
    history = json.dumps([{"user": "", "version": "", "base": ""}] * 51)
    answer = _ask(client, version, history=history)
    assert answer.status_code == 400 and "at most 50 turns" in json.dumps(answer.json())


def test_answered_questions_are_forgotten_after_a_day(client, alice, version, queued):
    client.force_login(alice)
    _ask(client, version)
    PlaygroundRun.objects.update(status="done", finished_at=timezone.now() - timedelta(days=2))
    assert playground.forget_old() == 1 and not PlaygroundRun.objects.exists()
