"""Schema fuzzing of /api/v1/ with schemathesis, as a member with real data: no answer is
a server error, and every answer matches the OpenAPI schema the API publishes."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from accounts import tokens
from finetune.models import JobStatus, ModelVersion
from finetune.states import transition
from tests import factories
from tests.finetune import pages_support as support

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
def in_process():
    """The WSGI app called in the test's transaction: as Django's test client does, the
    connection is not closed at each request's end (it holds the test's data)."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def member_key(in_process, project, alice, bob):
    """bob's token, in a project with alice's and his own data sets, repos, a version and
    jobs in each state, shared at every level."""
    support.catalog()
    spec = factories.node_spec()
    support.node()
    for level in ("rw", "ro", "none"):
        dataset = support.good_dataset(project, alice, level=level, name=f"chat-{level}")
        repo = factories.model_repo(project, alice, level=level)
        ModelVersion.objects.create(repo=repo, number=1, location=f"{repo.location}/v1")
        job = factories.job(project, alice, level=level, train_dataset=dataset, model_repo=repo)
        transition(job, JobStatus.RUNNING)
        factories.job(project, alice, level=level)
    factories.job(project, bob, status=JobStatus.SUCCEEDED)
    del spec
    return tokens.issue(bob, name="fuzz", projects=[project])[1]


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_answer_is_a_server_error_or_off_the_schema(case, member_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {member_key}"}, checks=CHECKS)
