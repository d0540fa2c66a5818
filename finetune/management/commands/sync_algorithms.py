from django.core.management.base import BaseCommand

from finetune.catalog_sync import sync_catalog


class Command(BaseCommand):
    help = "Fill the catalog with the trainer's built-in scenarios and algorithms."

    def handle(self, *args, **options) -> None:
        result = sync_catalog()
        self.stdout.write(
            self.style.SUCCESS(
                f"algorithms: {len(result.created)} created, {len(result.updated)} updated, "
                f"{len(result.disabled)} disabled"
            )
        )
        for code in result.disabled:
            self.stdout.write(f"  disabled (no longer built in): {code}")
