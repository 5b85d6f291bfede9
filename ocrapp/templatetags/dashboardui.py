"""Template filters of the dashboard page."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def age(seconds: Any) -> str:
    """A waiting time in seconds as "3 d 4 h", "5 h 12 min" or "7 min" ("" when unknown)."""
    if seconds is None or seconds == "":
        return ""
    s = max(0, int(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return _("%(d)s d %(h)s h") % {"d": days, "h": hours}
    if hours:
        return _("%(h)s h %(m)s min") % {"h": hours, "m": minutes}
    return _("%(m)s min") % {"m": minutes}
