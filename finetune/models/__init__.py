from finetune.models.catalog import Algorithm, PretrainedModel, Scenario, TaskType
from finetune.models.data import Dataset, ModelRepo, ModelVersion
from finetune.models.jobs import Job, JobEvent, JobNodeSpec, JobStatus, Priority
from finetune.models.permissions import (
    DatasetGroupObjectPermission,
    DatasetUserObjectPermission,
    JobGroupObjectPermission,
    JobUserObjectPermission,
    ModelRepoGroupObjectPermission,
    ModelRepoUserObjectPermission,
)

__all__ = [
    "Algorithm",
    "Dataset",
    "DatasetGroupObjectPermission",
    "DatasetUserObjectPermission",
    "Job",
    "JobEvent",
    "JobGroupObjectPermission",
    "JobNodeSpec",
    "JobStatus",
    "JobUserObjectPermission",
    "ModelRepo",
    "ModelRepoGroupObjectPermission",
    "ModelRepoUserObjectPermission",
    "ModelVersion",
    "PretrainedModel",
    "Priority",
    "Scenario",
    "TaskType",
]
