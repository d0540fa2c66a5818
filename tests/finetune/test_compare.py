"""对比损失曲线: the loss curves of jobs chosen on the list, on one chart, with the
parameters in which they differ; only jobs of the project the user may view."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Access
from finetune import monitoring
from finetune.models import MetricPoint
from tests import factories

pytestmark = pytest.mark.django_db


def _curve(job, losses, *, eval_every=0):
    start = timezone.now() - timedelta(minutes=10)
    for step, loss in enumerate(losses, start=1):
        MetricPoint.objects.create(
            job=job, worker="rank0", time=start + timedelta(seconds=step), step=step, loss=loss
        )
        if eval_every and step % eval_every == 0:
            MetricPoint.objects.create(
                job=job,
                worker="rank0",
                time=start + timedelta(seconds=step),
                step=step,
                eval_loss=loss + 0.1,
            )


def _compare(client, *pks, **query):
    return client.get(reverse("finetune:job_compare"), {"pk": list(pks), **query})


def test_the_chosen_jobs_curves_come_by_step_in_the_chosen_order(client, project, alice):
    fast = factories.job(project, alice, name="fast", parameters={"learning_rate": 0.001})
    slow = factories.job(project, alice, name="slow", parameters={"learning_rate": 0.0001})
    _curve(fast, [2.0, 1.0, 0.5, 0.25], eval_every=2)
    _curve(slow, [2.0, 1.8])
    client.force_login(alice)

    data = _compare(client, slow.pk, fast.pk, format="json").json()

    assert [job["id"] for job in data["jobs"]] == [slow.pk, fast.pk]
    slow_curve, fast_curve = data["jobs"]
    assert fast_curve["step"] == [1, 2, 3, 4] and fast_curve["loss"] == [2.0, 1.0, 0.5, 0.25]
    assert fast_curve["eval_loss"] == [None, 1.1, None, 0.35]
    assert fast_curve["last_loss"] == 0.25 and fast_curve["best_eval_loss"] == pytest.approx(0.35)
    assert slow_curve["best_eval_loss"] is None and slow_curve["label"] == f"slow (#{slow.pk})"
    assert data["running"] is False


def test_the_page_lists_the_jobs_and_the_parameters_that_differ(client, project, alice):
    one = factories.job(project, alice, name="lr-high", parameters={"epochs": 3, "seed": 1})
    two = factories.job(project, alice, name="lr-low", parameters={"epochs": 3, "seed": 2})
    client.force_login(alice)

    page = _compare(client, one.pk, two.pk).content.decode()

    assert 'data-testid="compare-loss"' in page and 'id="compare-config"' in page
    assert "lr-high" in page and "lr-low" in page
    differing = monitoring.compared_parameters([one, two])
    assert [values for _title, values in differing] == [[1, 2]]  # seed differs, epochs do not


def test_jobs_the_user_may_not_view_or_of_another_project_are_left_out_and_said(
    client, project, other_project, alice, bob, charlie
):
    mine = factories.job(project, alice, name="mine")
    private = factories.job(project, bob, name="bobs-private", level=Access.NONE)
    elsewhere = factories.job(other_project, charlie, name="research-job")
    client.force_login(alice)

    response = _compare(client, mine.pk, private.pk, elsewhere.pk, "junk", 10**30)

    page = response.content.decode()
    assert response.status_code == 200
    assert "mine" in page and "bobs-private" not in page and "research-job" not in page
    assert "2 of the chosen jobs are not shown" in page
    data = _compare(client, private.pk, elsewhere.pk, format="json").json()
    assert data["jobs"] == []


def test_no_job_chosen_says_how_to_choose(client, project, alice):
    client.force_login(alice)
    page = _compare(client).content.decode()
    assert 'data-testid="compare-empty"' in page and "compare-config" not in page


def test_more_than_a_chart_can_hold_compares_the_first_ones(client, project, alice):
    jobs = [factories.job(project, alice) for _ in range(monitoring.MAX_COMPARED + 2)]
    client.force_login(alice)
    response = _compare(client, *[job.pk for job in jobs])
    data = _compare(client, *[job.pk for job in jobs], format="json").json()
    assert len(data["jobs"]) == monitoring.MAX_COMPARED
    assert f"Only the first {monitoring.MAX_COMPARED}" in response.content.decode()


def test_the_lists_selection_becomes_a_comparison_address(client, project, alice):
    sweep = [factories.job(project, alice, name=f"sweep-{n}") for n in range(3)]
    factories.job(project, alice, name="other")
    client.force_login(alice)
    url = reverse("finetune:job_compare")

    picked = client.post(url, {"pk": [sweep[0].pk, sweep[2].pk]})
    assert picked.status_code == 302
    assert picked["Location"] == f"{url}?pk={sweep[0].pk}&pk={sweep[2].pk}"

    matching = client.post(url, {"_all": "1", "q": "sweep"})
    chosen = {int(pk) for pk in matching["Location"].split("?")[1].replace("pk=", "").split("&")}
    assert chosen == {job.pk for job in sweep}


def test_a_bulk_delete_of_rows_checked_says_which_it_leaves_out(client, project, alice, bob):
    mine = factories.job(project, alice, name="mine")
    theirs = factories.job(project, bob, name="theirs", level=Access.READ_ONLY)
    client.force_login(alice)
    page = client.post(reverse("finetune:job_bulk_delete"), {"pk": [mine.pk, theirs.pk]})
    text = page.content.decode()
    assert "1 chosen job is left out" in text and "theirs" not in text.split("chosen-jobs")[1]


def test_edit_mode_offers_the_comparison(client, project, alice):
    factories.job(project, alice)
    client.force_login(alice)
    page = client.get(reverse("finetune:job_list"), {"edit": "1"}).content.decode()
    assert reverse("finetune:job_compare") in page and 'data-testid="compare"' in page
