"""Login lockout: too many wrong passwords lock a username (and an address) for a while.

Every password check goes through Django's ``authenticate()`` and so through
:class:`LockoutModelBackend` (the only authentication backend): the web login, the admin login
and the signature re-authentication (``services.signature_check``); the admin's own password
change checks the old password through :func:`password_check`.

``LOGIN_LOCKOUT_ATTEMPTS`` wrong passwords for one username, or ``LOGIN_LOCKOUT_IP_ATTEMPTS``
from one client address (any usernames), within ``LOGIN_LOCKOUT_WINDOW`` seconds lock that
username (address) for ``LOGIN_LOCKOUT_SECONDS``: while locked even the right password is
refused, the login page says until when, and the lockout writes one ``login_locked`` row in
the audit trail. A good password resets the username's count. Counters and locks live in the
shared cache (``settings.CACHES``), so every web process sees them; if the cache cannot be
reached, passwords are checked without the lockout (and that is logged) rather than failing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.utils import formats, timezone
from django.utils.translation import ngettext

from ocrapp.security import client_ip, counter_hit

log = logging.getLogger(__name__)

LOGIN_LOCKED_ACTION = "login_locked"


@dataclass(frozen=True)
class Lock:
    scope: str  # "username" or "ip"
    until: datetime

    @property
    def seconds_left(self) -> int:
        return max(1, int((self.until - timezone.now()).total_seconds() + 0.999))


class AccountLocked(PermissionDenied):
    """Raised by the backend for a locked username or address (``authenticate()`` turns it
    into None, so callers ask :func:`locked` to tell a lockout from a wrong password)."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(lock.scope)
        self.lock = lock


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _keys(scope: str, value: str) -> tuple[str, str]:
    d = _digest(value.casefold() if scope == "username" else value)
    return f"lockout:fail:{scope}:{d}", f"lockout:lock:{scope}:{d}"


def _subjects(username: str | None, ip: str | None) -> list[tuple[str, str, int]]:
    out = []
    if username and settings.LOGIN_LOCKOUT_ATTEMPTS:
        out.append(("username", username, settings.LOGIN_LOCKOUT_ATTEMPTS))
    if ip and settings.LOGIN_LOCKOUT_IP_ATTEMPTS:
        out.append(("ip", ip, settings.LOGIN_LOCKOUT_IP_ATTEMPTS))
    return out


def locked(*, username: str | None, ip: str | None = None) -> Lock | None:
    """The lock in force on this username or address (None: none)."""
    now = timezone.now().timestamp()
    try:
        for scope, value, _limit in _subjects(username, ip):
            until = cache.get(_keys(scope, value)[1])
            if until is not None and float(until) > now:
                return Lock(scope=scope, until=datetime.fromtimestamp(float(until), tz=UTC))
    except Exception:
        log.exception("login lockout not checked: the cache is unreachable")
    return None


def failed(*, username: str | None, ip: str | None = None) -> Lock | None:
    """Count one wrong password; returns the lock when this failure locked the username or
    address (and writes its audit row)."""
    result = None
    try:
        for scope, value, limit in _subjects(username, ip):
            fail_key, lock_key = _keys(scope, value)
            count = counter_hit(fail_key, settings.LOGIN_LOCKOUT_WINDOW)
            if count < limit:
                continue
            until = timezone.now().timestamp() + settings.LOGIN_LOCKOUT_SECONDS
            if cache.add(lock_key, until, timeout=settings.LOGIN_LOCKOUT_SECONDS + 1):
                cache.delete(fail_key)  # after the lock, a fresh set of attempts
                lock = Lock(scope=scope, until=datetime.fromtimestamp(until, tz=UTC))
                _audit(lock=lock, username=username, ip=ip, failures=count)
                result = result or lock
    except Exception:
        log.exception("login failure not counted: the cache is unreachable")
    return result


def succeeded(*, username: str) -> None:
    """A good password: the username's count of failures starts again."""
    try:
        cache.delete(_keys("username", username)[0])
    except Exception:
        log.exception("login failures not reset: the cache is unreachable")


def _audit(*, lock: Lock, username: str | None, ip: str | None, failures: int) -> None:
    from ocrapp import audit

    user = None
    if username:
        user = (
            get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        )
    log.warning("login locked (%s) for %s from %s until %s", lock.scope, username, ip, lock.until)
    audit.record(
        actor=user,
        action=LOGIN_LOCKED_ACTION,
        obj=user,
        object_type="" if user else "auth.user",
        object_repr="" if user else (username or "")[:255],
        after={
            "scope": lock.scope,
            "username": username or "",
            "ip": ip or "",
            "failures": failures,
            "until": lock.until.isoformat(),
        },
        reason="too_many_failed_logins",
    )


def message(lock: Lock) -> str:
    """What the person is told: locked, until when, and in how many minutes."""
    minutes = max(1, (lock.seconds_left + 59) // 60)
    when = formats.time_format(timezone.localtime(lock.until), "H:i")
    params = {"time": when, "minutes": minutes}
    if lock.scope == "ip":
        return (
            ngettext(
                "Too many failed logins from your network address. Try again at %(time)s "
                "(in %(minutes)d minute).",
                "Too many failed logins from your network address. Try again at %(time)s "
                "(in %(minutes)d minutes).",
                minutes,
            )
            % params
        )
    return (
        ngettext(
            "Too many wrong passwords: this account is locked. Try again at %(time)s "
            "(in %(minutes)d minute).",
            "Too many wrong passwords: this account is locked. Try again at %(time)s "
            "(in %(minutes)d minutes).",
            minutes,
        )
        % params
    )


class LockoutModelBackend(ModelBackend):
    """Django's ModelBackend behind the lockout: a locked username or address is refused
    before the password is looked at; a wrong password is counted; a good one resets."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        ip = client_ip(request)
        lock = locked(username=username, ip=ip)
        if lock is not None:
            raise AccountLocked(lock)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            lock = failed(username=username, ip=ip)
            if lock is not None:
                raise AccountLocked(lock)
            return None
        succeeded(username=username)
        return user


def password_check(*, user: Any, password: str, request: Any = None) -> Lock | bool:
    """Check ``user``'s password under the lockout (for checks that do not go through
    ``authenticate()``, e.g. the old password of a password change): the lock in force, or
    whether the password is right."""
    username = user.get_username()
    ip = client_ip(request)
    lock = locked(username=username, ip=ip)
    if lock is not None:
        return lock
    if user.check_password(password):
        succeeded(username=username)
        return True
    return failed(username=username, ip=ip) or False


class LockoutFormMixin:
    """For an ``AuthenticationForm``: a locked-out person is told so, and until when
    (``lock``, ``lock_message``), also when the right password was given."""

    lock: Lock | None = None

    def clean(self):
        username = self.cleaned_data.get("username")
        ip = client_ip(self.request)
        self.lock = locked(username=username, ip=ip) if username else None
        if self.lock is None:
            try:
                return super().clean()
            except forms.ValidationError:
                self.lock = locked(username=username, ip=ip) if username else None
                if self.lock is None:
                    raise
        raise forms.ValidationError(message(self.lock), code="locked")

    @property
    def lock_message(self) -> str:
        return message(self.lock) if self.lock is not None else ""


class LockoutAuthenticationForm(LockoutFormMixin, AuthenticationForm):
    """The web login form (``/login/``)."""


class LockoutAdminAuthenticationForm(LockoutFormMixin, AdminAuthenticationForm):
    """The admin login form (``AuditedAdminSite.login_form``)."""
