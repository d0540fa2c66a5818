"""Bearer authentication with personal API tokens (accounts/tokens.py).

``request.auth`` is the ApiToken; the request then acts as its user, in the
token's projects only (api/scope.py), through the pages' own gate and services.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts import tokens


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _space, key = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None  # another scheme, or none: the session may still say who it is
        token = tokens.authenticate(key.strip())
        if token is None:
            raise exceptions.AuthenticationFailed(_("The token is unknown, expired or revoked."))
        return token.user, token

    def authenticate_header(self, request) -> str:
        # a 401 (not a 403) for a missing token, with the scheme to use
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "token"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (the page “API tokens”).",
        }
