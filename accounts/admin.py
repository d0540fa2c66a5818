from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.models import ApiToken, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    readonly_fields = ["joined_at"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "sharing_enabled", "kueue_queue", "member_count", "created_at"]
    list_filter = ["sharing_enabled"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]
    actions = ["turn_sharing_off", "turn_sharing_on"]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_member_count=Count("memberships"))

    @admin.display(description=_("members"), ordering="_member_count")
    def member_count(self, project: Project) -> int:
        return project._member_count

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        # Turning sharing off must also take back every grant (F9.3), and turning it
        # on again give back the levels chosen, which a plain save of the flag would not.
        flipped = change and "sharing_enabled" in form.changed_data
        super().save_model(request, obj, form, change)
        if flipped:
            from finetune.access import turn_sharing_off, turn_sharing_on

            (turn_sharing_on if obj.sharing_enabled else turn_sharing_off)(obj)

    def _switch_sharing(self, request, queryset, turn, message) -> None:
        """`turn(project)` for each chosen project; `message(count)` says what it did."""
        count = sum(turn(project) for project in queryset)
        self.message_user(request, message(count) % {"count": count}, messages.SUCCESS)

    @admin.action(description=_("Turn sharing off (others' access becomes none)"))
    def turn_sharing_off(self, request, queryset) -> None:
        from finetune.access import turn_sharing_off

        self._switch_sharing(
            request,
            queryset,
            turn_sharing_off,
            lambda count: ngettext(
                "Sharing is off; %(count)d object is no longer shared.",
                "Sharing is off; %(count)d objects are no longer shared.",
                count,
            ),
        )

    @admin.action(description=_("Turn sharing on (the levels chosen before apply again)"))
    def turn_sharing_on(self, request, queryset) -> None:
        from finetune.access import turn_sharing_on

        self._switch_sharing(
            request,
            queryset,
            turn_sharing_on,
            lambda count: ngettext(
                "Sharing is on; %(count)d object is shared again.",
                "Sharing is on; %(count)d objects are shared again.",
                count,
            ),
        )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "joined_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]
    readonly_fields = ["joined_at"]


def _grantable(queryset):
    """Permissions an operator may grant through a group or a user: not those of
    django-guardian's generic grant tables, which the platform does not use (its grants
    are rows of the tables beside each object, finetune.models.permissions)."""
    return queryset.exclude(content_type__app_label="guardian")


class GrantsFormMixin:
    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name in ("permissions", "user_permissions") and field is not None:
            field.queryset = _grantable(field.queryset)
        return field


admin.site.unregister(Group)
admin.site.unregister(get_user_model())


@admin.register(Group)
class PlatformGroupAdmin(GrantsFormMixin, GroupAdmin):
    pass


@admin.register(get_user_model())
class PlatformUserAdmin(GrantsFormMixin, UserAdmin):
    pass


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Operators see and revoke tokens; they are made by their users (or by
    ``manage.py create_api_token``), since the secret is shown only once."""

    list_display = ["name", "user", "prefix", "created_at", "expires_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at", "revoked_at"]
    filter_horizontal = ["projects"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Revoke the selected tokens"))
    def revoke(self, request, queryset) -> None:
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request,
            ngettext("%(count)d token revoked.", "%(count)d tokens revoked.", count)
            % {"count": count},
            messages.SUCCESS,
        )
