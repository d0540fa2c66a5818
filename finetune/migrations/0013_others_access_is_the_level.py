# Others' access is the object's level (finetune/access.py): the member groups'
# grants go. Each table is dropped whole (removing its fields one by one first
# cannot be done on SQLite, whose tables are remade for it).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("finetune", "0012_validation_in_a_worker"),
    ]

    operations = [
        migrations.DeleteModel(name="JobGroupObjectPermission"),
        migrations.DeleteModel(name="DatasetGroupObjectPermission"),
        migrations.DeleteModel(name="ModelRepoGroupObjectPermission"),
    ]
