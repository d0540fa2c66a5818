"""Keep each project's member group equal to its memberships.

Others' access is granted to the member group (DESIGN.md "Access"), so a user
who leaves a project loses it at once, and a newcomer gains it, without any
per-object grant being rewritten.
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import Membership


@receiver(post_save, sender=Membership)
def add_to_member_group(sender, instance: Membership, **kwargs) -> None:
    instance.user.groups.add(instance.project.member_group_id)


@receiver(post_delete, sender=Membership)
def remove_from_member_group(sender, instance: Membership, **kwargs) -> None:
    instance.user.groups.remove(instance.project.member_group_id)
