from functools import partial

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.models import Access
from finetune import access, storage
from finetune.models import (
    Algorithm,
    Dataset,
    DatasetUserObjectPermission,
    Job,
    JobEvent,
    JobNodeSpec,
    JobUserObjectPermission,
    MetricPoint,
    ModelRepo,
    ModelRepoUserObjectPermission,
    ModelVersion,
    PretrainedModel,
    ProjectDefaults,
    ReportBatch,
    ResourceSample,
    Scenario,
)
from finetune.services import jobs as services
from finetune.services.data import referenced_versions


@admin.register(Scenario)
class ScenarioAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_zh", "task_type", "sort_order"]
    list_filter = ["task_type"]
    search_fields = ["code", "name", "name_zh"]


@admin.register(Algorithm)
class AlgorithmAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_zh", "scenario", "enabled", "synced_at"]
    list_filter = ["scenario", "enabled"]
    search_fields = ["code", "name", "name_zh"]
    readonly_fields = ["synced_at"]


@admin.register(PretrainedModel)
class PretrainedModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task_type", "family", "location", "enabled"]
    list_filter = ["task_type", "family", "enabled"]
    search_fields = ["name", "family", "location"]
    readonly_fields = ["created_at"]


class SharedObjectAdmin(admin.ModelAdmin):
    """Jobs, data sets and repos: others' access is changed through `access.set_access`,
    as the pages do, so the caps of F9.2 and F9.3 hold; the project and creator, which
    the creator's grants hang on, are fixed once the object exists."""

    def get_readonly_fields(self, request, obj=None):
        fixed = ["project", "creator"] if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    #: Fields the change form must not write itself (a subclass saves them otherwise).
    saved_elsewhere: tuple[str, ...] = ()

    def save_model(self, request, obj, form, change: bool) -> None:
        level = obj.access
        if not change:
            super().save_model(request, obj, form, change)
            access.share_new(obj, level)
            return
        # Only what the operator changed: the rest of the row, read as the request
        # began, may be stale by now (a status, progress or version settled meanwhile).
        model_fields = {f.name for f in obj._meta.concrete_fields}
        fields = [
            name
            for name in form.changed_data
            if name in model_fields and name not in self.saved_elsewhere
        ]
        if fields:
            if "updated_at" in model_fields:
                fields.append("updated_at")
            obj.save(update_fields=fields)
        if "access" in form.changed_data:
            access.set_access(obj, level)


class LocationForm(forms.ModelForm):
    """A location an operator types obeys the members' rules (finetune/storage.py)."""

    def areas(self, project_id: int) -> list[str]:
        raise NotImplementedError

    def clean_location(self) -> str:
        location = self.cleaned_data["location"]
        project = self.cleaned_data.get("project") or getattr(self.instance, "project", None)
        if project is None or "location" not in self.changed_data:
            return location
        try:
            return storage.within(location, self.areas(project.pk))
        except storage.PathRefused as exc:
            raise forms.ValidationError(exc.messages) from exc


class DatasetAdminForm(LocationForm):
    def areas(self, project_id: int) -> list[str]:
        return storage.readable_areas(project_id)


class ModelRepoAdminForm(LocationForm):
    def areas(self, project_id: int) -> list[str]:
        return storage.writable_areas(project_id)


class AuditedAdmin(SharedObjectAdmin):
    readonly_fields = ["created_at", "updated_at"]
    autocomplete_fields = ["project", "creator"]


@admin.register(Dataset)
class DatasetAdmin(AuditedAdmin):
    form = DatasetAdminForm
    list_display = [
        "name",
        "project",
        "scenario",
        "format",
        "record_count",
        "validation_status",
        "access",
        "creator",
    ]
    list_filter = ["scenario", "format", "validation_status", "access", "project"]
    search_fields = ["name", "location", "creator__username"]
    readonly_fields = [*AuditedAdmin.readonly_fields, "validated_at"]


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    readonly_fields = ["number", "location", "job", "created_at"]
    fields = readonly_fields
    can_delete = False


@admin.register(ModelRepo)
class ModelRepoAdmin(AuditedAdmin):
    form = ModelRepoAdminForm
    list_display = ["name", "project", "scenario", "location", "access", "creator"]
    list_filter = ["scenario", "access", "project"]
    search_fields = ["name", "location", "creator__username"]
    inlines = [ModelVersionInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["repo", "number", "job", "created_at"]
    list_filter = ["repo__project"]
    search_fields = ["repo__name", "location"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["job"]


class JobNodeSpecInline(admin.TabularInline):
    model = JobNodeSpec
    extra = 0


class EventWords:
    """An event's message in the reader's language (the English stays in its field, for
    search and logs); its statuses are choices, which the admin shows by label."""

    @admin.display(description=_("message"), ordering="message")
    def message_text(self, event: JobEvent) -> str:
        return event.text


class JobEventInline(EventWords, admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ["time", "source", "kind", "actor", "from_status", "to_status", "message_text"]
    readonly_fields = fields
    ordering = ["-time"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class JobAdminForm(forms.ModelForm):
    def clean_access(self) -> str:
        """F9.2 and F9.3 hold for an operator too: no more open than what the job uses."""
        level = self.cleaned_data["access"]
        job = self.instance
        if job.pk is None:
            return level
        reads = [job.train_dataset, job.validation_dataset, job.test_dataset]
        reads += [
            version.repo
            for version in referenced_versions(job.algorithm.parameters_schema, job.parameters)
        ]
        cap = access.highest_job_access(job.project, reads, job.model_repo)
        if Access(level).rank > cap.rank:
            raise forms.ValidationError(
                _("At most %(cap)s: the job's data, save-model address or project allow no more.")
                % {"cap": cap.label}
            )
        return level


@admin.register(Job)
class JobAdmin(SharedObjectAdmin):
    form = JobAdminForm
    list_display = [
        "name",
        "project",
        "status",
        "priority",
        "scenario",
        "algorithm",
        "creator",
        "node_count",
        "created_at",
    ]
    list_filter = ["status", "priority", "scenario", "access", "project"]
    search_fields = ["name", "creator__username", "model_repo__name"]
    list_select_related = ["project", "scenario", "algorithm", "creator"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["project", "creator"]
    raw_id_fields = [
        "train_dataset",
        "validation_dataset",
        "test_dataset",
        "model_repo",
    ]
    # The status only changes through the state machine: the admin actions below. What
    # the platform derives (placement, the model made, the reported progress) is shown,
    # never typed.
    readonly_fields = [
        "status",
        "status_reason",
        "created_at",
        "queued_at",
        "started_at",
        "finished_at",
        "placement",
        "spec_in_use",
        "run_command",
        "cloned_from",
        "output_version",
        "progress",
        "eta_at",
    ]
    inlines = [JobNodeSpecInline, JobEventInline]
    actions = ["stop_jobs", "requeue_jobs"]

    saved_elsewhere = ("priority", "duration")

    def save_model(self, request, obj: Job, form, change: bool) -> None:
        """Priority and duration change through the services, as on the pages: with an
        event, and an admission pass that sees them; a finished job refuses them."""
        through_services = {}
        if change:
            saved = Job.objects.get(pk=obj.pk)
            for field in self.saved_elsewhere:
                if field in form.changed_data:
                    # The services say "from old to new": give them the old value.
                    through_services[field] = getattr(obj, field)
                    setattr(obj, field, getattr(saved, field))
        super().save_model(request, obj, form, change)
        operations = {"priority": services.change_priority, "duration": services.change_duration}
        for field, value in through_services.items():
            try:
                operations[field](request.user, obj, value, as_operator=True)
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)

    def _apply(self, request, queryset, operation, done: str) -> None:
        """Each job through `operation(user, job)` of the services, as the pages do;
        `done` says what became of those it changed (with %(count)d)."""
        moved, refused = 0, []
        for job in queryset:
            try:
                if operation(request.user, job):
                    moved += 1
            except ValidationError as exc:
                refused.append(" ".join(exc.messages))
        if moved:
            self.message_user(request, done % {"count": moved}, messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)

    @admin.action(description=_("Stop the selected jobs"))
    def stop_jobs(self, request, queryset) -> None:
        stop = partial(services.stop_job, as_operator=True)
        self._apply(request, queryset, stop, _("%(count)d job(s) are now Stopped."))

    @admin.action(description=_("Put the selected running jobs back in the queue"))
    def requeue_jobs(self, request, queryset) -> None:
        done = _("%(count)d job(s) go back to the queue as soon as their workloads are torn down.")
        self._apply(request, queryset, services.requeue_job, done)


@admin.register(JobEvent)
class JobEventAdmin(EventWords, admin.ModelAdmin):
    list_display = [
        "time",
        "job",
        "source",
        "kind",
        "actor",
        "from_status",
        "to_status",
        "message_text",
    ]
    list_filter = ["source", "kind", "to_status"]
    search_fields = ["job__name", "message"]
    list_select_related = ["job", "actor"]
    readonly_fields = [field.name for field in JobEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReportedAdmin(admin.ModelAdmin):
    """What workers reported: read-only, kept for the charts and for audits."""

    list_filter = ["job__project"]
    search_fields = ["job__name", "worker"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MetricPoint)
class MetricPointAdmin(ReportedAdmin):
    list_display = ["job", "worker", "time", "step", "loss", "eval_loss", "test_loss"]


@admin.register(ResourceSample)
class ResourceSampleAdmin(ReportedAdmin):
    list_display = ["job", "worker", "time", "cpu_percent", "memory_bytes", "device_util"]


@admin.register(ReportBatch)
class ReportBatchAdmin(ReportedAdmin):
    list_display = ["job", "worker", "seq", "received_at"]


class ObjectPermissionAdmin(admin.ModelAdmin):
    """Grant rows are written by finetune.access; operators read and revoke them here."""

    list_select_related = ["permission"]
    raw_id_fields = ["content_object"]
    list_filter = [("permission", admin.RelatedOnlyFieldListFilter)]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # a grant on a job is one of the job's permissions, not any of the site's
        if db_field.name == "permission":
            from django.contrib.auth.models import Permission
            from django.contrib.contenttypes.models import ContentType

            target = self.model._meta.get_field("content_object").related_model
            kwargs["queryset"] = Permission.objects.filter(
                content_type=ContentType.objects.get_for_model(target)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None) -> bool:
        return False


for table in (JobUserObjectPermission, DatasetUserObjectPermission, ModelRepoUserObjectPermission):
    admin.site.register(
        table,
        type(
            f"{table.__name__}Admin",
            (ObjectPermissionAdmin,),
            {
                "list_display": ["content_object", "user", "permission"],
                "search_fields": ["user__username"],
                "raw_id_fields": ["content_object", "user"],
            },
        ),
    )


class ProjectDefaultsForm(forms.ModelForm):
    class Meta:
        model = ProjectDefaults
        fields = ["project", "node_spec", "node_count", "priority", "duration_hours", "model_repos"]

    def clean(self) -> dict:
        cleaned = super().clean()
        project, repos = cleaned.get("project"), cleaned.get("model_repos") or []
        if project is not None and any(repo.project_id != project.pk for repo in repos):
            raise ValidationError(_("Choose save-model addresses of this project only."))
        scenarios = [repo.scenario_id for repo in repos]
        if len(scenarios) != len(set(scenarios)):
            raise ValidationError(_("At most one save-model address per scenario."))
        return cleaned


@admin.register(ProjectDefaults)
class ProjectDefaultsAdmin(admin.ModelAdmin):
    """What a job made through the OpenAI-compatible API gets (api/openai/jobs.py)."""

    form = ProjectDefaultsForm
    list_display = ["project", "node_spec", "node_count", "priority", "duration_hours"]
    autocomplete_fields = ["project"]
    filter_horizontal = ["model_repos"]
