"""Permission names (and django-axes's access log entries) in the reader's language.

Django writes each permission's name into the database once, in English, when it
migrates ("Can add job"), and the admin shows those names wherever it lists
permissions (the group and user forms, the object-permission tables and their
filters). So a permission is said afresh each time it is shown: the four built-in
actions with the model's own (translated) name, the project's own permissions by the
translated name its model declares.
"""

from __future__ import annotations

from django.utils.translation import gettext, gettext_noop

gettext_noop("Access log of %(username)s at %(time)s")

BUILT_IN = {
    "add": gettext_noop("Can add %(model)s"),
    "change": gettext_noop("Can change %(model)s"),
    "delete": gettext_noop("Can delete %(model)s"),
    "view": gettext_noop("Can view %(model)s"),
}


def permission_name(permission) -> str:
    """``permission.name`` in the active language."""
    model = permission.content_type.model_class()
    action, _, rest = permission.codename.partition("_")
    if model is not None and action in BUILT_IN and rest == model._meta.model_name:
        return gettext(BUILT_IN[action]) % {"model": model._meta.verbose_name}
    return gettext(permission.name)


def said_permission(permission) -> str:
    """What the admin shows for a permission: its model, then its name."""
    return f"{permission.content_type} | {permission_name(permission)}"


def said_access_log(log) -> str:
    """django-axes's access log entry (its own words are an English f-string)."""
    return gettext("Access log of %(username)s at %(time)s") % {
        "username": log.username or "-",
        "time": log.attempt_time,
    }


def install() -> None:
    from axes.models import AccessLog
    from django.contrib.auth.models import Permission

    Permission.__str__ = said_permission
    AccessLog.__str__ = said_access_log
