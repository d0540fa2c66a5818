# Others' access is the object's level (finetune/access.py): the projects' member
# groups, which held it as group grants, go.

from django.db import migrations


def remove_member_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__startswith="project:", name__endswith=":members").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_verbose_names"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="project",
            name="member_group",
        ),
        migrations.RunPython(remove_member_groups, migrations.RunPython.noop),
    ]
