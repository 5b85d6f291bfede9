"""API authentication: ``Authorization: Token <key>`` (as line software sends it) or
``Authorization: Bearer <key>``, checked against the sha256 of the key (``ApiToken``)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

KEYWORDS = (b"token", b"bearer")


class ApiTokenAuthentication(BaseAuthentication):
    """Authenticates ``request.user`` as the token's owner; ``request.auth`` is the ApiToken.
    An unknown, revoked or malformed key answers 401 (one message for all, so a caller cannot
    tell a revoked key from a wrong one). ``last_used_at`` is updated at most once a minute."""

    def authenticate(self, request):
        # imported here: DRF imports this class while rest_framework.views is still loading,
        # and selectors -> errors imports rest_framework.views
        from ocrapp import selectors, services

        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                _("Invalid Authorization header: give one key after “Token” or “Bearer”.")
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API token.")) from None
        token = selectors.api_token_find(key=key)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API token."))
        services.api_token_touch(token=token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return "Token"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema (``/api/schema``, ``/api/docs``) describes the token header."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "API token of a station or a user: `Token <key>` or `Bearer <key>`.",
        }
