"""A running job with a known report token, as launching leaves it (F7.1 tests)."""

import pytest

from finetune.models import Job, JobStatus
from finetune.states import transition
from scheduler.launching import hash_token
from tests import factories
from tests.finetune import pages_support as support

REPORT_TOKEN = "s3cret-token"


@pytest.fixture
def running(project, alice):
    job = factories.job(project, alice)
    transition(job, JobStatus.RUNNING)
    Job.objects.filter(pk=job.pk).update(report_token_hash=hash_token(REPORT_TOKEN))
    job.refresh_from_db()
    return job


@pytest.fixture
def ready(project, alice):
    """What a valid create form needs: the catalog, alice's data set and repo, a spec and
    a node to run on."""
    support.catalog()
    dataset = support.good_dataset(project, alice)
    repo = factories.model_repo(project, alice)
    spec = factories.node_spec()
    support.node()
    return dataset, repo, spec
