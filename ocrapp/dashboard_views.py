"""The dashboard: its page (``/dashboard/``) and API (``GET /api/v1/dashboard``, ``/drift``).

Both call ``ocrapp.dashboard`` (queries and the drift check) for the user who asks, so a
station token or an operator sees only their stations. The page draws its charts with our own
``static/ocrapp/dashboard.js`` (Chart.js from ``static/ocrapp/vendor``) from a
``<script type="application/json">`` data block: no inline script (CSP).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from ocrapp import dashboard, roles, selectors
from ocrapp.errors import ApplicationError
from ocrapp.models import ProductType, Station
from ocrapp.views import page_time_zone

_PARAMS = [
    OpenApiParameter("from", OpenApiTypes.STR, description="YYYY-MM-DD or YYYY-MM-DDTHH:MM."),
    OpenApiParameter("to", OpenApiTypes.STR, description="Inclusive day, or a time (exclusive)."),
    OpenApiParameter("tz", OpenApiTypes.STR, description="IANA zone of from/to, buckets, times."),
    OpenApiParameter("line", OpenApiTypes.STR, description="Line at capture time."),
    OpenApiParameter("station", OpenApiTypes.STR, description="Station id or line/name."),
    OpenApiParameter("product_type", OpenApiTypes.STR, description="Id or name."),
    OpenApiParameter("bucket", OpenApiTypes.STR, description="hour or day."),
    OpenApiParameter("group", OpenApiTypes.STR, description="line or station."),
]


class DashboardApi(APIView):
    @extend_schema(
        operation_id="dashboard",
        parameters=_PARAMS,
        responses={200: OpenApiTypes.OBJECT},
        description="Per line (or station) and bucket: reads, auto-accept rate, mean confidence, "
        "glare/blur/exposure shares, alarms, reads still waiting for review; the backlog "
        "now (waiting, oldest and median age in seconds) and the drift check.",
    )
    def get(self, request):
        f = dashboard.dashboard_filters_parse(params=request.query_params, default_tz="UTC")
        data = dashboard.dashboard(user=request.user, f=f)
        return Response(dashboard.dashboard_json(data, f))


class DriftApi(APIView):
    @extend_schema(
        operation_id="drift",
        parameters=_PARAMS,
        responses={200: OpenApiTypes.OBJECT},
        description="Drift of each line's (group=station: station's) image statistics and "
        "confidence: the recent window's medians against its own baseline, in baseline "
        "spreads (README, Dashboard). The windows end at `to` (default now).",
    )
    def get(self, request):
        f = dashboard.dashboard_filters_parse(params=request.query_params, default_tz="UTC")
        drifts = dashboard.drift_report(user=request.user, f=f)
        return Response(
            {
                "filters": dashboard.filters_json(f),
                "drifting": [
                    d.line + ("" if d.station is None else f" / {d.station_label}")
                    for d in drifts
                    if d.drifting
                ],  # fmt: skip
                "results": dashboard.drift_json(drifts, f),
            }
        )


def _choices(user) -> dict:
    """The lines, stations and product types of the filter form (the stations in scope)."""
    qs = Station.objects.all()
    scope = roles.capture_scope(user)
    if scope is not None:
        qs = qs.filter(pk__in=roles.station_ids(user))
    qs = list(qs.order_by("line", "name"))
    return {
        "lines": sorted({s.line for s in qs}),
        "stations": qs,
        "product_types": list(ProductType.objects.order_by("name")),
    }


def chart_specs() -> list[tuple[str, str, str]]:
    """(series key in the JSON, title, kind: count | share | value) of each chart, in order."""
    return [
        ("reads", _("Reads per bucket"), "count"),
        ("accept_rate", _("Auto-accept rate"), "share"),
        ("waiting", _("Reads still waiting for review"), "count"),
        ("alarms", _("Alarms (mislabels)"), "count"),
        ("confidence", _("Mean confidence"), "value"),
        ("glare_share", _("Share with glare warnings"), "share"),
        ("blur_share", _("Share with blur warnings"), "share"),
        ("exposure_share", _("Share with exposure warnings"), "share"),
    ]


@login_required
@require_GET
def dashboard_page(request: HttpRequest) -> HttpResponse:
    """Charts per line or station over time, the review backlog and drift warnings."""
    tz = page_time_zone(request)
    errors: list[str] = []
    try:
        f = dashboard.dashboard_filters_parse(params=request.GET, default_tz=tz)
    except ApplicationError as exc:
        errors.append(exc.message)
        f = dashboard.dashboard_filters_parse(params={}, default_tz=tz)
    data = dashboard.dashboard(user=request.user, f=f)
    with timezone.override(selectors.time_zone_find(name=f.tz)):
        return render(
            request,
            "ocrapp/dashboard.html",
            {
                "f": f,
                "errors": errors,
                "series": data["series"],
                "drift": data["drift"],
                "chart_data": dashboard.dashboard_json(data, f),
                "chart_specs": chart_specs(),
                "tz": f.tz,
                "from_value": timezone.localtime(f.date_from).strftime("%Y-%m-%dT%H:%M"),
                "to_value": timezone.localtime(f.date_to).strftime("%Y-%m-%dT%H:%M"),
                **_choices(request.user),
            },
            status=400 if errors else 200,
        )
