"""Template context of every page: the review queue's and open alarms' counts in the navigation."""

from __future__ import annotations

from django.http import HttpRequest

from ocrapp import roles, selectors


def review_nav(request: HttpRequest) -> dict:
    """``can_review`` and ``review_queue_count`` (a callable: the count is queried only when a
    template shows it, i.e. in ``base.html``'s navigation for a user who can review)."""
    user = getattr(request, "user", None)
    can_review = roles.can(user, "review_read")
    return {
        "can_review": can_review,
        "review_queue_count": (lambda: selectors.review_queue_count(user=user))
        if can_review
        else 0,
    }


def alarm_nav(request: HttpRequest) -> dict:
    """``alarm_open_count``: open alarms in the user's scope (a callable: queried only when
    ``base.html``'s navigation shows it, for a signed-in user)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"alarm_open_count": 0}
    return {"alarm_open_count": lambda: selectors.alarm_open_count(user=user)}
