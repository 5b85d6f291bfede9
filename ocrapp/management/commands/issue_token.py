"""``manage.py issue_token --station LINE/NAME``: issue an API token and print its key once.

The key is not stored (only its sha256 and prefix are), so this output is the only place it
appears. ``--rotate`` revokes the station's other tokens first; ``--user NAME`` issues a
personal token for an existing user instead (it carries that user's role).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ocrapp import selectors, services
from ocrapp.errors import ApplicationError


class Command(BaseCommand):
    help = "Issue an API token for a station (or a user) and print its key once."

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--station", help="the station as LINE/NAME (or its id)")
        who.add_argument("--user", help="username of an existing user (a personal token)")
        parser.add_argument("--name", default="", help="what the token is for (shown in admin)")
        parser.add_argument(
            "--rotate", action="store_true", help="revoke the station's other tokens first"
        )

    def handle(self, *args, **options):
        reason = "issued with manage.py issue_token"
        if options["station"]:
            try:
                station = selectors.station_find(ref=options["station"])
            except ApplicationError as exc:
                raise CommandError(exc.message) from None
            key = services.station_token_issue(
                station=station, rotate=options["rotate"], name=options["name"], reason=reason
            )
            what = f"station {station}"
        else:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
            _token, key = services.api_token_issue(user=user, name=options["name"], reason=reason)
            what = f"user {user.get_username()}"
        self.stdout.write(f"API token for {what} (shown once, store it now): {key}")
