"""API clients of the cast: each sends a personal token of its user, as a script would."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts import tokens
from accounts.projects import projects_of
from tests.finetune.conftest import data_worker, ready  # noqa: F401  (shared fixtures)


def client_of(user, projects=None) -> APIClient:
    """A client that authenticates with a new token of ``user`` for ``projects`` (by
    default every project the user belongs to)."""
    _token, key = tokens.issue(user, name="test", projects=projects or projects_of(user))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def api_of():
    return client_of


@pytest.fixture
def ready_draft(ready):  # noqa: F811  (the fixture, not the import)
    """A complete create body for the API (the ``ready`` fixture's data set, repo, spec)."""
    from finetune.models import Algorithm, PretrainedModel

    dataset, repo, spec = ready
    algorithm = Algorithm.objects.select_related("scenario").get(code="sft_lora")
    return {
        "name": "api-run",
        "scenario": algorithm.scenario_id,
        "algorithm": algorithm.pk,
        "pretrained_model": PretrainedModel.objects.get(name="tiny-llama").pk,
        "train_dataset": dataset.pk,
        "model_repo": repo.pk,
        "node_specs": [spec.pk],
        "duration_hours": 2,
    }
