"""Others' access (F9): who may do what with a job, a data set or a model repo.

Grants live in django-guardian's direct-foreign-key tables. The creator holds
every permission on what they made; the project's member group holds those of
the object's access level; project administrators may do everything by their
role. Every page and API gets objects through `restrict` (or `get_for`), so an
object a user may not see is simply not there.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.http import Http404
from guardian.shortcuts import assign_perm, remove_perm

from accounts.models import Access, Membership, Project
from finetune.models import (
    Dataset,
    DatasetGroupObjectPermission,
    DatasetUserObjectPermission,
    Job,
    JobGroupObjectPermission,
    JobUserObjectPermission,
    ModelRepo,
    ModelRepoGroupObjectPermission,
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

_PERMISSION_TABLES = {
    Job: (JobUserObjectPermission, JobGroupObjectPermission),
    Dataset: (DatasetUserObjectPermission, DatasetGroupObjectPermission),
    ModelRepo: (ModelRepoUserObjectPermission, ModelRepoGroupObjectPermission),
}

Shareable = Job | Dataset | ModelRepo


def codename(model: type[models.Model], action: str) -> str:
    actions = LEVEL_ACTIONS[model][Access.READ_WRITE]
    if action not in actions:
        raise ValueError(f"{model.__name__} has no action {action!r}; known: {actions}")
    return f"{action}_{model._meta.model_name}"


def grant_creator(obj: Shareable) -> None:
    """The creator may always do everything with what they made (F9.4)."""
    model = type(obj)
    for action in LEVEL_ACTIONS[model][Access.READ_WRITE]:
        assign_perm(codename(model, action), obj.creator, obj)


@transaction.atomic
def set_access(obj: Shareable, level: str, *, chosen: bool = True) -> Access:
    """Set others' access of `obj` and rewrite the member group's grants to match.

    Returns the level applied: none whenever the project's sharing is off (F9.3).
    While sharing is on, `level` is also kept as the one chosen (`chosen_access`),
    unless `chosen` is False (sharing turned on again applies what was chosen).
    """
    model = type(obj)
    if chosen and obj.project.sharing_enabled and obj.chosen_access != level:
        obj.chosen_access = Access(level)
        model.objects.filter(pk=obj.pk).update(chosen_access=level)
    applied = Access(level) if obj.project.sharing_enabled else Access.NONE
    group = obj.project.member_group
    wanted = set(LEVEL_ACTIONS[model][applied])
    for action in LEVEL_ACTIONS[model][Access.READ_WRITE]:
        if action in wanted:
            assign_perm(codename(model, action), group, obj)
        else:
            remove_perm(codename(model, action), group, obj)
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
    for model, (_user_table, group_table) in _PERMISSION_TABLES.items():
        objects = model.objects.filter(project=project)
        group_table.objects.filter(
            content_object__in=objects, group_id=project.member_group_id
        ).delete()
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
    user_table, group_table = _PERMISSION_TABLES[model]
    memberships = Membership.objects.filter(user=user)
    admin_of = memberships.filter(role=Membership.Role.ADMIN).values("project_id")
    user_grant = user_table.objects.filter(
        content_object=OuterRef("pk"), user=user, permission__codename=perm
    )
    group_grant = group_table.objects.filter(
        content_object=OuterRef("pk"),
        group__in=user.groups.all(),
        permission__codename=perm,
    )
    return queryset.filter(project__in=memberships.values("project_id")).filter(
        Q(project__in=admin_of) | Exists(user_grant) | Exists(group_grant)
    )


def can(user, action: str, obj: Shareable) -> bool:
    return restrict(type(obj).objects.filter(pk=obj.pk), user, action).exists()


def allowed_actions(user, obj: Shareable) -> set[str]:
    """The actions the pages may offer `user` on `obj` (at most three queries)."""
    return allowed_actions_for_many(user, [obj])[obj.pk]


def get_for(queryset: models.QuerySet, user, action: str = "view", **lookup) -> models.Model:
    """One object the user may see, else 404; PermissionDenied-free by design:
    callers check the action separately to answer 403 for visible objects."""
    try:
        return restrict(queryset, user, action).get(**lookup)
    except queryset.model.DoesNotExist:
        raise Http404 from None


def allowed_actions_for_many(user, objects: Iterable[Shareable]) -> dict[int, set[str]]:
    """`allowed_actions` for a whole page of objects of one model in three queries,
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
    user_table, group_table = _PERMISSION_TABLES[model]
    pks = [obj.pk for obj in objects if roles.get(obj.project_id) == Membership.Role.MEMBER]
    granted: dict[int, set[str]] = {pk: set() for pk in pks}
    if pks:
        rows = list(
            user_table.objects.filter(content_object__in=pks, user=user).values_list(
                "content_object_id", "permission__codename"
            )
        )
        rows += group_table.objects.filter(content_object__in=pks, group__user=user).values_list(
            "content_object_id", "permission__codename"
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
            result[obj.pk] = {a for a in actions if codename(model, a) in granted[obj.pk]}
    return result
