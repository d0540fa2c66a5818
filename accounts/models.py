from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from config.env import DNS_LABEL  # a LocalQueue's name is one


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
    kueue_queue = models.CharField(
        _("Kueue LocalQueue"),
        max_length=63,
        blank=True,
        validators=[
            RegexValidator(
                DNS_LABEL,
                _("Lower-case letters, digits and '-', first and last a letter or digit."),
            )
        ],
        help_text=_(
            "With Kueue admission, the LocalQueue its jobs are submitted to; empty: the "
            "deployment's default queue."
        ),
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


class ApiTokenQuerySet(models.QuerySet):
    def usable(self):
        """Tokens that authenticate now: not revoked, not expired, of an active user."""
        from django.utils import timezone

        return self.filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now()),
            revoked_at__isnull=True,
            user__is_active=True,
        )


class ApiToken(models.Model):
    """A personal API token (api/authentication.py): a script acts as its user, only in
    the projects named here, through the same gate as the pages. Only a hash of the
    secret is kept; the secret itself is shown once, when the token is made."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=100)
    # the token's first characters, to tell tokens apart in lists and logs
    prefix = models.CharField(_("prefix"), max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    projects = models.ManyToManyField(
        Project, related_name="api_tokens", verbose_name=_("projects")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
