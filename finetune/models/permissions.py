"""Direct-foreign-key object permission tables for django-guardian: the creators'
grants (finetune/access.py; what the other members may do is the object's level).

The generic tables key objects by a text primary key and a content type, which
cannot be joined or indexed well; these are plain foreign keys, so restricting
a job list by permission is one indexed EXISTS per row (DESIGN.md "Access").
"""

from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import models
from django.utils.translation import gettext_lazy as _
from guardian.models import UserObjectPermissionBase

from accounts.wording import permission_name
from finetune.models.data import Dataset, ModelRepo
from finetune.models.jobs import Job


class UserGrant(UserObjectPermissionBase):
    """guardian's row, its fields named and said in the reader's language."""

    permission = models.ForeignKey(
        Permission, on_delete=models.CASCADE, verbose_name=_("permission")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, verbose_name=_("user")
    )

    class Meta(UserObjectPermissionBase.Meta):
        abstract = True

    def __str__(self) -> str:
        return f"{self.content_object} | {self.user} | {permission_name(self.permission)}"


class JobUserObjectPermission(UserGrant):
    content_object = models.ForeignKey(Job, on_delete=models.CASCADE, verbose_name=_("job"))

    class Meta(UserGrant.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="job_uperm_object")]
        verbose_name = _("user permission on a job")
        verbose_name_plural = _("user permissions on jobs")


class DatasetUserObjectPermission(UserGrant):
    content_object = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, verbose_name=_("data set")
    )

    class Meta(UserGrant.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="dataset_uperm_object")]
        verbose_name = _("user permission on a data set")
        verbose_name_plural = _("user permissions on data sets")


class ModelRepoUserObjectPermission(UserGrant):
    content_object = models.ForeignKey(
        ModelRepo, on_delete=models.CASCADE, verbose_name=_("model repository")
    )

    class Meta(UserGrant.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="repo_uperm_object")]
        verbose_name = _("user permission on a model repo")
        verbose_name_plural = _("user permissions on model repos")
