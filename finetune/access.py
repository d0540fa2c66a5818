"""Others' access (F9): who may do what with a job, a data set or a model repo.

One source for each rule: the creator holds every permission on what they made,
as grants in django-guardian's direct-foreign-key user table (written once, when
the object is made); what the project's other members may do is the object's
level (`access`: LEVEL_ACTIONS), and nothing else; project administrators may do
everything by their role. Every page and API gets objects through `restrict` (or
`get_for`), so an object a user may not see is simply not there.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.http import Http404

from accounts.models import Access, Membership, Project
from finetune.models import (
    Dataset,
    DatasetUserObjectPermission,
    Job,
    JobUserObjectPermission,
    ModelRepo,
    ModelRepoUserObjectPermission,
)

JOB_ACTIONS = ("view", "clone", "change_duration", "change_priority", "stop", "delete")
RESOURCE_ACTIONS = ("view", "change", "delete")

#: F9.4: what the other members may do at each level.
LEVEL_ACTIONS: dict[type[models.Model], dict[str, tuple[str, ...]]] = {
    Job: {
        Access.READ_WRITE: JOB_ACTIONS,
        Access.READ_ONLY: ("view", "clone"),
        Access.NONE: (),
    },
    Dataset: {
        Access.READ_WRITE: RESOURCE_ACTIONS,
        Access.READ_ONLY: ("view",),
        Access.NONE: (),
    },
    ModelRepo: {
        Access.READ_WRITE: RESOURCE_ACTIONS,
        Access.READ_ONLY: ("view",),
        Access.NONE: (),
    },
}

#: The creators' grants, one table per model.
_GRANTS = {
    Job: JobUserObjectPermission,
    Dataset: DatasetUserObjectPermission,
    ModelRepo: ModelRepoUserObjectPermission,
}

Shareable = Job | Dataset | ModelRepo


def levels_allowing(model: type[models.Model], action: str) -> list[str]:
    """The levels at which the other members may perform ``action``."""
    codename(model, action)  # a known action
    return [level for level, actions in LEVEL_ACTIONS[model].items() if action in actions]


def codename(model: type[models.Model], action: str) -> str:
    actions = LEVEL_ACTIONS[model][Access.READ_WRITE]
    if action not in actions:
        raise ValueError(f"{model.__name__} has no action {action!r}; known: {actions}")
    return f"{action}_{model._meta.model_name}"


def grant_creator(obj: Shareable) -> None:
    """The creator may always do everything with what they made (F9.4): one row per
    action, written in one statement (guardian's assign_perm takes three per row)."""
    model = type(obj)
    codenames = [codename(model, action) for action in LEVEL_ACTIONS[model][Access.READ_WRITE]]
    permissions = Permission.objects.filter(
        content_type=ContentType.objects.get_for_model(model), codename__in=codenames
    )
    _GRANTS[model].objects.bulk_create(
        [
            _GRANTS[model](content_object=obj, user_id=obj.creator_id, permission=permission)
            for permission in permissions
        ],
        ignore_conflicts=True,  # granted already: the same rows
    )


@transaction.atomic
def set_access(obj: Shareable, level: str, *, chosen: bool = True) -> Access:
    """Set others' access of `obj`.

    Returns the level applied: none whenever the project's sharing is off (F9.3).
    While sharing is on, `level` is also kept as the one chosen (`chosen_access`),
    unless `chosen` is False (sharing turned on again applies what was chosen).
    """
    model = type(obj)
    if chosen and obj.project.sharing_enabled and obj.chosen_access != level:
        obj.chosen_access = Access(level)
        model.objects.filter(pk=obj.pk).update(chosen_access=level)
    applied = Access(level) if obj.project.sharing_enabled else Access.NONE
    if obj.access != applied:
        obj.access = applied
        model.objects.filter(pk=obj.pk).update(access=applied)
    return applied


def share_new(obj: Shareable, level: str) -> Access:
    """Grants for an object just created: its creator's, then the others'."""
    grant_creator(obj)
    return set_access(obj, level)


@transaction.atomic
def turn_sharing_on(project: Project) -> int:
    """Sharing on again: every object gets back the level its creator chose, a job no
    more open than what it uses (F9.2). Returns how many objects are shared again."""
    Project.objects.filter(pk=project.pk).update(sharing_enabled=True)
    project.sharing_enabled = True
    shared = 0
    for model in (Dataset, ModelRepo):  # first: the jobs' caps are read from them
        for obj in model.objects.filter(project=project).exclude(chosen_access=Access.NONE):
            obj.project = project
            shared += set_access(obj, obj.chosen_access, chosen=False) != Access.NONE
    jobs = Job.objects.filter(project=project).exclude(chosen_access=Access.NONE)
    related = ("train_dataset", "validation_dataset", "test_dataset", "model_repo")
    for job in jobs.select_related(*related):
        job.project = project
        datasets = [job.train_dataset, job.validation_dataset, job.test_dataset]
        cap = highest_job_access(project, datasets, job.model_repo)
        level = Access.lowest(Access(job.chosen_access), cap)
        shared += set_access(job, level, chosen=False) != Access.NONE
    return shared


@transaction.atomic
def turn_sharing_off(project: Project) -> int:
    """F9.3: everything of the project becomes none, the levels chosen kept for when
    sharing is turned on again; returns how many objects changed."""
    Project.objects.filter(pk=project.pk).update(sharing_enabled=False)
    project.sharing_enabled = False
    changed = 0
    for model in _GRANTS:
        objects = model.objects.filter(project=project)
        changed += objects.exclude(access=Access.NONE).update(access=Access.NONE)
    return changed


def highest_job_access(
    project: Project, datasets: Iterable[Dataset], model_repo: ModelRepo | None
) -> Access:
    """F9.2 and F9.3: a job may be no more open than anything it uses."""
    if not project.sharing_enabled:
        return Access.NONE
    levels = [Access.READ_WRITE, *(d.access for d in datasets if d is not None)]
    if model_repo is not None:
        levels.append(model_repo.access)
    return Access.lowest(*levels)


def restrict(queryset: models.QuerySet, user, action: str = "view") -> models.QuerySet:
    """The objects of `queryset` on which `user` may perform `action`."""
    model = queryset.model
    perm = codename(model, action)
    if not user.is_authenticated or not user.is_active:
        return queryset.none()
    if user.is_superuser:
        return queryset
    memberships = Membership.objects.filter(user=user)
    admin_of = memberships.filter(role=Membership.Role.ADMIN).values("project_id")
    created = _GRANTS[model].objects.filter(
        content_object=OuterRef("pk"), user=user, permission__codename=perm
    )
    return queryset.filter(project__in=memberships.values("project_id")).filter(
        Q(project__in=admin_of) | Exists(created) | Q(access__in=levels_allowing(model, action))
    )


def can(user, action: str, obj: Shareable) -> bool:
    return restrict(type(obj).objects.filter(pk=obj.pk), user, action).exists()


def allowed_actions(user, obj: Shareable) -> set[str]:
    """The actions the pages may offer `user` on `obj` (at most two queries)."""
    return allowed_actions_for_many(user, [obj])[obj.pk]


def get_for(queryset: models.QuerySet, user, action: str = "view", **lookup) -> models.Model:
    """One object the user may see, else 404; PermissionDenied-free by design:
    callers check the action separately to answer 403 for visible objects."""
    try:
        return restrict(queryset, user, action).get(**lookup)
    except queryset.model.DoesNotExist:
        raise Http404 from None


def allowed_actions_for_many(user, objects: Iterable[Shareable]) -> dict[int, set[str]]:
    """`allowed_actions` for a whole page of objects of one model in two queries,
    so a list that draws an operations menu on every row has no N+1."""
    objects = list(objects)
    if not objects:
        return {}
    model = type(objects[0])
    actions = LEVEL_ACTIONS[model][Access.READ_WRITE]
    if user.is_superuser:
        return {obj.pk: set(actions) for obj in objects}
    roles = dict(
        Membership.objects.filter(
            user=user, project_id__in={obj.project_id for obj in objects}
        ).values_list("project_id", "role")
    )
    pks = [obj.pk for obj in objects if roles.get(obj.project_id) == Membership.Role.MEMBER]
    granted: dict[int, set[str]] = {pk: set() for pk in pks}
    if pks:
        rows = (
            _GRANTS[model]
            .objects.filter(content_object__in=pks, user=user)
            .values_list("content_object_id", "permission__codename")
        )
        for pk, perm in rows:
            granted[pk].add(perm)
    result: dict[int, set[str]] = {}
    for obj in objects:
        role = roles.get(obj.project_id)
        if role == Membership.Role.ADMIN:
            result[obj.pk] = set(actions)
        elif role is None:
            result[obj.pk] = set()
        else:
            others = LEVEL_ACTIONS[model][Access(obj.access)]
            result[obj.pk] = {
                a for a in actions if a in others or codename(model, a) in granted[obj.pk]
            }
    return result


class ObjectAccessBackend:
    """``user.has_perm("finetune.stop_job", job)`` answers as `can` does (F9): the
    authentication backend of object permissions, in place of guardian's, so that
    there is one rule. Model-level permissions stay Django's (ModelBackend)."""

    def authenticate(self, request, **credentials):
        return None

    def has_perm(self, user, perm: str, obj=None) -> bool:
        model = type(obj)
        if obj is None or model not in _GRANTS:
            return False
        app_label, _dot, name = perm.partition(".")
        action, _underscore, model_name = name.rpartition("_")
        meta = model._meta
        if (app_label, model_name) != (meta.app_label, meta.model_name):
            return False
        if action not in LEVEL_ACTIONS[model][Access.READ_WRITE]:
            return False
        return can(user, action, obj)
