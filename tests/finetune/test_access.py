"""Guardian grants and restriction for each access level (F9)."""

import pytest

from accounts.models import Access
from finetune import access
from finetune.models import (
    Dataset,
    Job,
    JobUserObjectPermission,
    ModelRepo,
)
from tests import factories

pytestmark = pytest.mark.django_db

F94 = {
    Access.READ_WRITE: set(access.JOB_ACTIONS),
    Access.READ_ONLY: {"view", "clone"},
    Access.NONE: set(),
}


@pytest.mark.parametrize("level", list(Access))
@pytest.mark.parametrize("action", access.JOB_ACTIONS)
def test_other_members_may_do_what_f94_allows(project, alice, bob, level, action):
    job = factories.job(project, alice, level=level)
    allowed = action in F94[level]
    assert access.can(bob, action, job) is allowed
    assert (action in access.allowed_actions(bob, job)) is allowed
    assert bob.has_perm(f"finetune.{action}_job", job) is allowed


@pytest.mark.parametrize("level", list(Access))
@pytest.mark.parametrize("action", access.JOB_ACTIONS)
def test_the_creator_and_administrators_may_do_everything(
    project, alice, dora, admin, level, action
):
    job = factories.job(project, alice, level=level)
    for user in (alice, dora, admin):
        assert access.can(user, action, job), user
        assert action in access.allowed_actions(user, job)


@pytest.mark.parametrize("level", list(Access))
def test_outsiders_may_do_nothing(project, alice, charlie, level):
    job = factories.job(project, alice, level=level)
    for action in access.JOB_ACTIONS:
        assert not access.can(charlie, action, job)
    assert access.allowed_actions(charlie, job) == set()


def test_a_member_who_leaves_loses_access_at_once(project, alice, bob):
    job = factories.job(project, alice, level=Access.READ_WRITE)
    assert access.can(bob, "stop", job)
    bob.memberships.get(project=project).delete()
    bob.refresh_from_db()
    assert not access.can(bob, "view", job)


def test_restrict_returns_only_what_the_user_may_act_on(project, alice, bob, charlie):
    shared = factories.job(project, alice, level=Access.READ_WRITE)
    readable = factories.job(project, alice, level=Access.READ_ONLY)
    private = factories.job(project, alice, level=Access.NONE)
    own = factories.job(project, bob, level=Access.NONE)
    jobs = Job.objects.all()
    assert set(access.restrict(jobs, bob, "view")) == {shared, readable, own}
    assert set(access.restrict(jobs, bob, "stop")) == {shared, own}
    assert set(access.restrict(jobs, alice, "delete")) == {shared, readable, private}
    assert set(access.restrict(jobs, charlie, "view")) == set()


def test_restrict_refuses_anonymous_and_inactive_users(project, alice, bob):
    from django.contrib.auth.models import AnonymousUser

    factories.job(project, alice, level=Access.READ_WRITE)
    assert not access.restrict(Job.objects.all(), AnonymousUser(), "view").exists()
    bob.is_active = False
    bob.save()
    assert not access.restrict(Job.objects.all(), bob, "view").exists()


def test_changing_the_level_is_all_it_takes_to_change_what_others_may_do(project, alice, bob):
    job = factories.job(project, alice, level=Access.READ_WRITE)
    assert access.set_access(job, Access.READ_ONLY) == Access.READ_ONLY
    assert Job.objects.get(pk=job.pk).access == Access.READ_ONLY
    assert access.allowed_actions(bob, job) == {"view", "clone"}
    access.set_access(job, Access.NONE)
    assert access.allowed_actions(bob, job) == set()
    assert not access.restrict(Job.objects.all(), bob).exists()
    # the level is the one source: a level written by anyone else says the same
    Job.objects.filter(pk=job.pk).update(access=Access.READ_WRITE)
    job.refresh_from_db()
    assert access.allowed_actions(bob, job) == set(access.JOB_ACTIONS)
    assert access.restrict(Job.objects.all(), bob, "stop").get() == job
    # the creator's own grants are untouched
    assert JobUserObjectPermission.objects.filter(content_object=job, user=alice).count() == 6


def test_an_unknown_action_is_a_programming_error(project, alice):
    job = factories.job(project, alice)
    with pytest.raises(ValueError, match="has no action 'publish'"):
        access.can(alice, "publish", job)


@pytest.mark.parametrize(
    ("model", "make"), [(Dataset, factories.dataset), (ModelRepo, factories.model_repo)]
)
@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (Access.READ_WRITE, {"view", "change", "delete"}),
        (Access.READ_ONLY, {"view"}),
        (Access.NONE, set()),
    ],
)
def test_data_sets_and_model_repos_follow_the_same_levels(
    project, alice, bob, charlie, model, make, level, expected
):
    obj = make(project, alice, level)
    assert access.allowed_actions(bob, obj) == expected
    assert access.allowed_actions(alice, obj) == {"view", "change", "delete"}
    assert access.allowed_actions(charlie, obj) == set()
    visible = set(access.restrict(model.objects.all(), bob, "view"))
    assert visible == ({obj} if "view" in expected else set())


@pytest.mark.parametrize(
    ("data_levels", "repo_level", "cap"),
    [
        ([Access.READ_WRITE], Access.READ_WRITE, Access.READ_WRITE),
        ([Access.READ_WRITE, Access.READ_ONLY], Access.READ_WRITE, Access.READ_ONLY),
        ([Access.READ_WRITE], Access.NONE, Access.NONE),
        ([Access.READ_ONLY], Access.READ_ONLY, Access.READ_ONLY),
    ],
)
def test_a_job_may_be_no_more_open_than_what_it_uses(project, alice, data_levels, repo_level, cap):
    datasets = [factories.dataset(project, alice, level) for level in data_levels]
    repo = factories.model_repo(project, alice, repo_level)
    assert access.highest_job_access(project, datasets, repo) == cap


def test_with_sharing_off_the_only_level_is_none(project, alice, bob):
    job = factories.job(project, alice, level=Access.READ_WRITE)
    dataset = job.train_dataset
    changed = access.turn_sharing_off(project)
    assert changed == 3  # the job, its data set and its model repo
    for obj in (job, dataset, job.model_repo):
        obj.refresh_from_db()
        assert obj.access == Access.NONE
        assert access.allowed_actions(bob, obj) == set()
        assert access.allowed_actions(alice, obj) != set()
    assert access.highest_job_access(project, [dataset], job.model_repo) == Access.NONE
    # and a level asked for later is forced to none
    assert access.set_access(job, Access.READ_WRITE) == Access.NONE
    assert access.allowed_actions(bob, job) == set()


def test_restrict_costs_one_query_whatever_the_number_of_jobs(
    project, alice, bob, django_assert_num_queries
):
    for level in (Access.READ_WRITE, Access.READ_ONLY, Access.NONE) * 4:
        factories.job(project, alice, level=level)
    with django_assert_num_queries(1):
        jobs = list(access.restrict(Job.objects.all(), bob, "view"))
    assert len(jobs) == 8
