from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Access(models.TextChoices):
    """What the other members of a project may do with an object (F9.1).

    Ordered: NONE < READ_ONLY < READ_WRITE. A job may not be more open than the
    data sets and model repo it uses (F9.2).
    """

    READ_WRITE = "rw", _("Read-write")
    READ_ONLY = "ro", _("Read-only")
    NONE = "none", _("None")

    @property
    def rank(self) -> int:
        return _ACCESS_RANK[self]

    @classmethod
    def lowest(cls, *levels: str) -> Access:
        return min((cls(level) for level in levels), key=lambda level: level.rank)


_ACCESS_RANK = {Access.NONE: 0, Access.READ_ONLY: 1, Access.READ_WRITE: 2}


class Project(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    sharing_enabled = models.BooleanField(
        _("sharing enabled"),
        default=True,
        help_text=_("When off, others' access of every job, data set and model repo is none."),
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="Membership",
        related_name="projects",
        verbose_name=_("members"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("project")
        verbose_name_plural = _("projects")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", _("Member")
        ADMIN = "admin", _("Administrator")

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("project")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("user"),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(_("joined"), auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=["member", "admin"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return _("%(user)s in %(project)s (%(role)s)") % {
            "user": self.user,
            "project": self.project,
            "role": self.get_role_display(),
        }
