"""Demo data (idempotent): product types, station LINE-1/station-A with an API token, and one
login per role with a random password. Passwords and the token key are printed once, when they
are made (only hashes are stored); ``--reset-passwords`` makes new passwords for the demo
logins. No password is fixed in code or configuration."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ocrapp import roles, services
from ocrapp.demo import DEMO_PRODUCT_TYPES, DEMO_USERS, LEGACY_DEMO_LOGIN
from ocrapp.models import ApiToken, ProductType, Station


def _password() -> str:
    return secrets.token_urlsafe(12)


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="give the demo logins new random passwords (printed once)",
        )

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo is refused with DJANGO_ENV=production: it makes demo logins. Create "
                "real users with createsuperuser and the admin."
            )
        User = get_user_model()
        roles.sync_groups()  # the admin role holds every permission there is now
        out = self.stdout.write
        self._retire_legacy_login(User)
        for name, spec in DEMO_PRODUCT_TYPES.items():
            if not ProductType.objects.filter(name=name).exists():
                services.product_type_create(name=name, **spec)
        station = Station.objects.filter(line="LINE-1", name="station-A").first()
        if station is None:
            station = services.station_create(line="LINE-1", name="station-A")
        reason = "demo data (seed_demo)"
        for demo in DEMO_USERS:
            user = User.objects.filter(username=demo.username).first()
            if user is None:
                password = _password()
                user = services.user_create_with_role(
                    username=demo.username,
                    role=demo.role,
                    password=password,
                    is_staff=demo.is_staff,
                    full_name=demo.full_name,
                    reason=reason,
                )
                said = f"{demo.username} / {password}"
            elif options["reset_passwords"]:
                password = _password()
                services.user_password_set(
                    user_id=user.pk, actor=None, password=password, reason=reason
                )
                said = f"{demo.username} / {password}  (new password)"
            else:
                said = f"{demo.username}  (exists; password unchanged, --reset-passwords)"
            if demo.role == roles.OPERATOR:
                services.station_member_add(station=station, user=user)
            out(f"[demo] {demo.role:<16} web login: {said}")
        active = ApiToken.objects.filter(station=station, revoked_at__isnull=True).first()
        if active is None:
            key = services.station_token_issue(station=station, reason=reason)
            out(f"[demo] station LINE-1/station-A API token (shown once): {key}")
        else:
            out(
                f"[demo] station LINE-1/station-A has API token {active.prefix}… "
                "(new one: manage.py issue_token --station LINE-1/station-A)"
            )

    def _retire_legacy_login(self, User) -> None:
        """Earlier versions made a superuser "demo" with a published password: lock it."""
        username, password = LEGACY_DEMO_LOGIN
        legacy = User.objects.filter(username=username).first()
        if legacy is not None and legacy.check_password(password):
            services.user_password_set(
                user_id=legacy.pk,
                actor=None,
                password=None,
                reason="the demo password was published in the source code",
            )
            self.stdout.write(f"[demo] locked the old {username!r} login (its password was public)")
