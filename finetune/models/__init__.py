from finetune.models.catalog import Algorithm, PretrainedModel, Scenario, TaskType
from finetune.models.data import (
    Dataset,
    ModelEvaluation,
    ModelExport,
    ModelRepo,
    ModelVersion,
    PlaygroundRun,
)
from finetune.models.defaults import ProjectDefaults
from finetune.models.jobs import Job, JobEvent, JobNodeSpec, JobStatus, Priority
from finetune.models.metrics import MetricPoint, ReportBatch, ResourceSample
from finetune.models.permissions import (
    DatasetUserObjectPermission,
    JobUserObjectPermission,
    ModelRepoUserObjectPermission,
)

__all__ = [
    "Algorithm",
    "Dataset",
    "DatasetUserObjectPermission",
    "Job",
    "JobEvent",
    "JobNodeSpec",
    "JobStatus",
    "JobUserObjectPermission",
    "MetricPoint",
    "ModelEvaluation",
    "ModelExport",
    "ModelRepo",
    "ModelRepoUserObjectPermission",
    "ModelVersion",
    "PlaygroundRun",
    "PretrainedModel",
    "Priority",
    "ProjectDefaults",
    "ReportBatch",
    "ResourceSample",
    "Scenario",
    "TaskType",
]
