"""Direct-foreign-key object permission tables for django-guardian.

The generic tables key objects by a text primary key and a content type, which
cannot be joined or indexed well; these are plain foreign keys, so restricting
a job list by permission is one indexed EXISTS per row (DESIGN.md "Access").
"""

from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from finetune.models.data import Dataset, ModelRepo
from finetune.models.jobs import Job


class JobUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Job, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="job_uperm_object")]


class JobGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Job, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "group"], name="job_gperm_object")]


class DatasetUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Dataset, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="dataset_uperm_object")]


class DatasetGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Dataset, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "group"], name="dataset_gperm_object")]


class ModelRepoUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(ModelRepo, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "user"], name="repo_uperm_object")]


class ModelRepoGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(ModelRepo, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["content_object", "group"], name="repo_gperm_object")]
