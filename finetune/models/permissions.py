"""Direct-foreign-key object permission tables for django-guardian.

The generic tables key objects by a text primary key and a content type, which
cannot be joined or indexed well; these are plain foreign keys, so restricting
a job list by permission is one indexed EXISTS per row (DESIGN.md "Access").
"""

from django.db import models
from django.utils.translation import gettext_lazy as _
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from finetune.models.data import Dataset, ModelRepo
from finetune.models.jobs import Job


class JobUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Job, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="job_uperm_object")]
        verbose_name = _("user permission on a job")
        verbose_name_plural = _("user permissions on jobs")


class JobGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Job, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "group"], name="job_gperm_object")]
        verbose_name = _("group permission on a job")
        verbose_name_plural = _("group permissions on jobs")


class DatasetUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Dataset, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="dataset_uperm_object")]
        verbose_name = _("user permission on a data set")
        verbose_name_plural = _("user permissions on data sets")


class DatasetGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Dataset, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "group"], name="dataset_gperm_object")]
        verbose_name = _("group permission on a data set")
        verbose_name_plural = _("group permissions on data sets")


class ModelRepoUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(ModelRepo, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="repo_uperm_object")]
        verbose_name = _("user permission on a model repo")
        verbose_name_plural = _("user permissions on model repos")


class ModelRepoGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(ModelRepo, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "group"], name="repo_gperm_object")]
        verbose_name = _("group permission on a model repo")
        verbose_name_plural = _("group permissions on model repos")
