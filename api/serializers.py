"""What the API answers with: the objects the pages show, as JSON. Read-only; writes
go through api/drafts.py (jobs) and the services, as the pages' forms do."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Project
from finetune.models import (
    Algorithm,
    Dataset,
    Job,
    ModelRepo,
    ModelVersion,
    PretrainedModel,
    Scenario,
)
from scheduler.models import NodeSpec, ResourcePool


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "description", "sharing_enabled"]


class ScenarioSerializer(serializers.ModelSerializer):
    display_name = serializers.CharField(read_only=True)

    class Meta:
        model = Scenario
        fields = ["id", "code", "task_type", "name", "name_zh", "display_name"]


class AlgorithmSerializer(serializers.ModelSerializer):
    scenario = serializers.SlugRelatedField(slug_field="code", read_only=True)
    display_name = serializers.CharField(read_only=True)

    class Meta:
        model = Algorithm
        fields = ["id", "code", "scenario", "name", "name_zh", "display_name"]
        fields += ["parameters_schema"]


class BaseModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = PretrainedModel
        fields = ["id", "name", "task_type", "family"]


class NodeSpecSerializer(serializers.ModelSerializer):
    summary = serializers.CharField(read_only=True)

    class Meta:
        model = NodeSpec
        fields = ["id", "name", "summary", "cpu_millis", "memory_mib", "device_type"]
        fields += ["device_count", "device_model", "device_memory_gib"]


class PoolSerializer(serializers.ModelSerializer):
    class Meta:
        model = ResourcePool
        fields = ["id", "name", "dedicated", "description"]


class _Resource(serializers.ModelSerializer):
    scenario = serializers.SlugRelatedField(slug_field="code", read_only=True)
    creator = serializers.SlugRelatedField(slug_field="username", read_only=True)
    project = serializers.PrimaryKeyRelatedField(read_only=True)


class DatasetSerializer(_Resource):
    class Meta:
        model = Dataset
        fields = ["id", "project", "name", "scenario", "format", "location", "size_bytes"]
        fields += ["record_count", "access", "creator", "created_at", "updated_at"]
        fields += ["validation_status", "validation_progress", "validated_at"]


class DatasetDetailSerializer(DatasetSerializer):
    class Meta(DatasetSerializer.Meta):
        fields = [*DatasetSerializer.Meta.fields, "validation_report"]


class ModelRepoSerializer(_Resource):
    version_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = ModelRepo
        fields = ["id", "project", "name", "scenario", "location", "description", "access"]
        fields += ["creator", "created_at", "updated_at", "version_count"]


class ModelVersionSerializer(serializers.ModelSerializer):
    repo = serializers.PrimaryKeyRelatedField(read_only=True)
    job = serializers.PrimaryKeyRelatedField(read_only=True)
    derived_from = serializers.PrimaryKeyRelatedField(read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "repo", "number", "location", "job", "derived_from", "metrics"]
        fields += ["manifest", "created_at", "download_url"]

    def get_download_url(self, version: ModelVersion) -> str:
        return reverse("api:version-download", args=[version.repo_id, version.number])


class PredictionSerializer(serializers.Serializer):
    """F1.17: where a queued job (or a draft) stands, and when it should start."""

    verdict = serializers.ChoiceField(choices=["now", "queue", "never"])
    starts_now = serializers.BooleanField()
    position = serializers.IntegerField()
    pool = serializers.CharField(allow_null=True)
    spec = serializers.IntegerField(source="spec_id", allow_null=True)
    expected_start = serializers.DateTimeField(allow_null=True)
    latest_start = serializers.DateTimeField(source="start", allow_null=True)
    reason = serializers.CharField(source="reason_text")
    message = serializers.SerializerMethodField()

    def get_message(self, prediction) -> str:
        return prediction.message()


class OutputVersionSerializer(serializers.Serializer):
    repo = serializers.IntegerField(source="repo_id")
    number = serializers.IntegerField()


class JobSerializer(serializers.ModelSerializer):
    creator = serializers.SlugRelatedField(slug_field="username", read_only=True)
    project = serializers.PrimaryKeyRelatedField(read_only=True)
    scenario = serializers.SlugRelatedField(slug_field="code", read_only=True)
    algorithm = serializers.SlugRelatedField(slug_field="code", read_only=True)
    pretrained_model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    status_reason = serializers.CharField(source="reason_text", read_only=True)
    node_specs = serializers.SerializerMethodField()
    duration_hours = serializers.SerializerMethodField()
    deadline = serializers.DateTimeField(read_only=True, allow_null=True)
    output_version = OutputVersionSerializer(read_only=True, allow_null=True)
    prediction = serializers.SerializerMethodField()
    actions = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "name",
            "creator",
            "status",
            "status_reason",
            "priority",
            "access",
            "scenario",
            "algorithm",
            "pretrained_model",
            "train_dataset",
            "validation_dataset",
            "test_dataset",
            "model_repo",
            "parameters",
            "node_specs",
            "node_count",
            "node_names",
            "pool",
            "driver_version",
            "duration_hours",
            "spec_in_use",
            "placement",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "deadline",
            "progress",
            "eta_at",
            "waiting_for_data",
            "cloned_from",
            "resume_from_step",
            "output_version",
            "prediction",
            "actions",
            "page_url",
        ]
        read_only_fields = fields

    def get_node_specs(self, job: Job) -> list[int]:
        # spec_choices are prefetched by the views: no query per row
        choices = sorted(job.spec_choices.all(), key=lambda choice: choice.rank)
        return [choice.spec_id for choice in choices]

    def get_duration_hours(self, job: Job) -> float:
        return round(job.duration.total_seconds() / 3600, 4)

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, job: Job):
        found = (self.context.get("predictions") or {}).get(job.pk)
        return PredictionSerializer(found).data if found is not None else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_actions(self, job: Job) -> list[str]:
        allowed = (self.context.get("actions") or {}).get(job.pk, set())
        return sorted(allowed)

    def get_page_url(self, job: Job) -> str:
        return reverse("finetune:job_detail", args=[job.pk])


class EventSerializer(serializers.Serializer):
    """One row of the events tab: the platform's and the cluster's, in the reader's language."""

    time = serializers.DateTimeField(allow_null=True)
    source = serializers.CharField()
    kind = serializers.CharField()
    who = serializers.CharField()
    message = serializers.CharField()


class EventListSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    error = serializers.CharField()


class LogChunkSerializer(serializers.Serializer):
    worker = serializers.IntegerField()
    text = serializers.CharField()
    complete = serializers.BooleanField()


class LogPageSerializer(serializers.Serializer):
    workers = serializers.ListField(child=serializers.IntegerField())
    worker = serializers.IntegerField(allow_null=True)
    chunks = LogChunkSerializer(many=True)
    cursor = serializers.CharField(allow_null=True)
    more = serializers.BooleanField()
    error = serializers.CharField()


class MetricsSerializer(serializers.Serializer):
    """The monitoring tab's series (finetune/monitoring.py `snapshot`)."""

    @classmethod
    def schema_type(cls):
        return OpenApiTypes.OBJECT


class DraftSerializer(serializers.Serializer):
    """A job's create fields (创建大模型精调, F1): the create form's, by id. Checked by the
    create form and the service exactly as the page's are (api/drafts.py)."""

    project = serializers.IntegerField(
        required=False, help_text="Needed where the token has several."
    )
    name = serializers.CharField(required=False, allow_blank=True)
    scenario = serializers.IntegerField(required=False)
    algorithm = serializers.IntegerField(required=False)
    pretrained_model = serializers.IntegerField(required=False)
    train_dataset = serializers.IntegerField(required=False)
    validation_dataset = serializers.IntegerField(required=False, allow_null=True)
    test_dataset = serializers.IntegerField(required=False, allow_null=True)
    model_repo = serializers.IntegerField(required=False)
    parameters = serializers.DictField(required=False)
    node_specs = serializers.ListField(child=serializers.IntegerField(), required=False)
    node_count = serializers.IntegerField(required=False)
    node_names = serializers.ListField(child=serializers.CharField(), required=False)
    pool = serializers.IntegerField(required=False, allow_null=True)
    driver_version = serializers.CharField(required=False, allow_blank=True)
    duration_hours = serializers.FloatField(required=False)
    priority = serializers.IntegerField(required=False)
    access = serializers.CharField(required=False)


class CloneSerializer(DraftSerializer):
    resume_from_step = serializers.IntegerField(required=False, allow_null=True)


class PrioritySerializer(serializers.Serializer):
    priority = serializers.IntegerField()


class DurationSerializer(serializers.Serializer):
    duration_hours = serializers.FloatField()
