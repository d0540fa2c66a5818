from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.projects import projects_of


class SwitchProjectForm(forms.Form):
    project = forms.IntegerField()

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_project(self) -> int:
        project_id = self.cleaned_data["project"]
        if project_id not in {project.pk for project in projects_of(self.user)}:
            raise forms.ValidationError(_("You are not a member of that project."))
        return project_id


#: Days a new API token lasts, offered on its page; "" never expires.
TOKEN_LIFETIMES = (7, 30, 90, 365)


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("What the token is for, e.g. the script or pipeline that uses it."),
    )
    projects = forms.ModelMultipleChoiceField(
        label=_("Projects"),
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The token acts only in these projects, with your access in each."),
    )
    lifetime = forms.TypedChoiceField(
        label=_("Expires"),
        required=False,
        coerce=int,
        empty_value=None,
        initial=90,
        choices=lambda: (
            [("", _("Never"))]
            + [(days, _("In %(days)s days") % {"days": days}) for days in TOKEN_LIFETIMES]
        ),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from accounts.models import Project

        mine = [project.pk for project in projects_of(user)]
        self.fields["projects"].queryset = Project.objects.filter(pk__in=mine)
