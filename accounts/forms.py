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
