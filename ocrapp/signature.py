"""When a signer must give their password again (the request side of the electronic signature).

A signature (``services.signature_check``) asks for the password when it is *due*:

- always when the request is authenticated by an API token (a token is not a person's password);
- in a browser session when the session's last password check is older than
  ``settings.SIGNATURE_REAUTH_MINUTES`` (0: at every signature). The time of the last check is
  kept in the session: set when the user logs in with their password and after every signature
  that checked it.

The services never see the request; views and API views ask :func:`password_due` and call
:func:`password_checked` after a signature that checked the password.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils import timezone

SESSION_KEY = "signature_password_at"


def _session(request: Any) -> Any:
    return getattr(request, "session", None)


def _token_request(request: Any) -> bool:
    """Whether a DRF request was authenticated by something else than the browser session."""
    from rest_framework.authentication import SessionAuthentication

    authenticator = getattr(request, "successful_authenticator", None)
    return authenticator is not None and not isinstance(authenticator, SessionAuthentication)


def last_password_check(request: Any) -> datetime | None:
    """When this browser session last checked the user's password (None: unknown)."""
    session = _session(request)
    if session is None or _token_request(request):
        return None
    raw = session.get(SESSION_KEY)
    try:
        return datetime.fromisoformat(raw) if raw else None
    except (TypeError, ValueError):
        return None


def password_due_at(request: Any) -> datetime | None:
    """When the password becomes due in this session (None: it is due now)."""
    at = last_password_check(request)
    if at is None:
        return None
    due = at + timedelta(minutes=settings.SIGNATURE_REAUTH_MINUTES)
    return due if due > timezone.now() else None


def password_due(request: Any) -> bool:
    """Whether a signature made with this request must carry the signer's password."""
    return password_due_at(request) is None


def password_checked(request: Any) -> None:
    """Record in the session that the user's password was just checked."""
    session = _session(request)
    if session is not None and not _token_request(request):
        session[SESSION_KEY] = timezone.now().isoformat()


@receiver(user_logged_in, dispatch_uid="ocrapp.signature.login")
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:  # noqa: ARG001
    """A login is a password check (Django's own hook for it, like ``last_login``)."""
    if request is not None:
        password_checked(request)
