"""The five scenarios of the manual (spec/FEATURES.md F1.5)."""

from django.db import migrations

SCENARIOS = [
    ("llm/pretrain", "llm", "Pre-training", "预训练", 10),
    ("llm/sft", "llm", "LLM fine-tuning", "大语言模型微调", 20),
    ("llm/reward_model", "llm", "Reward model", "奖励模型", 30),
    ("llm/rl", "llm", "Reinforcement learning", "强化学习", 40),
    ("t2i/finetune", "t2i", "Text-to-image fine-tuning", "文生图模型微调", 10),
]


def seed(apps, schema_editor):
    Scenario = apps.get_model("finetune", "Scenario")
    for code, task_type, name, name_zh, order in SCENARIOS:
        Scenario.objects.update_or_create(
            code=code,
            defaults={"task_type": task_type, "name": name, "name_zh": name_zh, "sort_order": order},
        )


def unseed(apps, schema_editor):
    Scenario = apps.get_model("finetune", "Scenario")
    Scenario.objects.filter(code__in=[row[0] for row in SCENARIOS], algorithms=None).delete()


class Migration(migrations.Migration):
    dependencies = [("finetune", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
