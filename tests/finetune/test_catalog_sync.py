import pytest
from django.core.management import call_command

from finetune.models import Algorithm, Scenario
from trainer import catalog

pytestmark = pytest.mark.django_db


def test_sync_fills_the_catalog_from_the_trainer(capsys):
    call_command("sync_algorithms")
    assert "algorithms:" in capsys.readouterr().out
    codes = set(Algorithm.objects.filter(enabled=True).values_list("code", flat=True))
    assert codes == {info.code for info in catalog.ALGORITHMS}
    for info in catalog.ALGORITHMS:
        stored = Algorithm.objects.get(code=info.code)
        assert stored.scenario.code == info.scenario
        assert stored.name_zh == info.name_zh
        assert stored.parameters_schema == info.parameters_schema
    assert Scenario.objects.count() == 5


def test_an_algorithm_no_longer_built_in_is_disabled_not_deleted(capsys):
    retired = Algorithm.objects.create(
        code="old_method", scenario=Scenario.objects.get(code="llm/sft"), name="Old", name_zh="旧"
    )
    call_command("sync_algorithms")
    assert "disabled (no longer built in): old_method" in capsys.readouterr().out
    retired.refresh_from_db()
    assert retired.enabled is False
    call_command("sync_algorithms")  # a second run changes nothing
    assert Algorithm.objects.filter(enabled=True).count() == len(catalog.ALGORITHMS)
