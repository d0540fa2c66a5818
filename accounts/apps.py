from axes.apps import AppConfig as AxesConfig
from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    default = True  # the app's own config; the one below is django-axes's
    name = "accounts"
    verbose_name = _("Projects and members")

    def ready(self) -> None:
        from accounts import wording

        wording.install()  # permission names in the reader's language


class LoginProtectionConfig(AxesConfig):
    """django-axes, named in the reader's language in the admin."""

    verbose_name = _("Login protection")
