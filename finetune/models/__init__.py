from finetune.models.catalog import Algorithm, PretrainedModel, Scenario, TaskType
from finetune.models.data import Dataset, ModelRepo, ModelVersion
from finetune.models.jobs import Job, JobEvent, JobNodeSpec, JobStatus, Priority
from finetune.models.metrics import MetricPoint, ReportBatch, ResourceSample
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
    "MetricPoint",
    "ModelRepo",
    "ModelRepoGroupObjectPermission",
    "ModelRepoUserObjectPermission",
    "ModelVersion",
    "PretrainedModel",
    "Priority",
    "ReportBatch",
    "ResourceSample",
    "Scenario",
    "TaskType",
]
