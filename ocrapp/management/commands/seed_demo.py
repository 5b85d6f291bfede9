"""Create the demo login, product types and a station (idempotent); print how to log in."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from ocrapp import services
from ocrapp.demo import DEMO_PRODUCT_TYPES
from ocrapp.models import ProductType, Station


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DEMO_USERNAME", "demo")
        password = os.environ.get("DEMO_PASSWORD", "demo-serial-2026")
        user = User.objects.filter(username=username).first()
        if user is None:  # through the service, so the demo login's creation is audited too
            services.user_create(
                actor=None,
                username=username,
                password=password,
                fields={"is_staff": True, "is_superuser": True},
                reason="demo seed",
            )
        for name, spec in DEMO_PRODUCT_TYPES.items():
            if not ProductType.objects.filter(name=name).exists():
                services.product_type_create(name=name, **spec)
        station = Station.objects.filter(line="LINE-1", name="station-A").first()
        if station is None:
            station = services.station_create(line="LINE-1", name="station-A")
        token = services.station_token_issue(station=station)
        self.stdout.write(
            f"[demo] web login: {username} / {password}  (change it in /admin/)\n"
            f"[demo] station LINE-1/station-A API token: {token}\n"
        )
