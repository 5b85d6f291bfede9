"""Reads waiting for review, and the people who review them (service, API, page and browser tests).

Reads are stored with the real ``services.capture_create`` + ``read_save`` from results built
with the contract (``tests.results``); the photo is a real rendered label, so line crops cut
from it show the text.
"""

from __future__ import annotations

from dataclasses import replace

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from ocrapp import roles, services
from ocrapp.models import Capture
from tests.images import label_png
from tests.results import AUTO_ACCEPT, read_result
from workers.contract import ReviewDecision, ReviewReason

PASSWORD = "sign-pass-1234"


def grant(user, role: str):
    """Put ``user`` in the role's group (created with its permissions when a transactional test
    flushed the groups of migration 0005)."""
    group, created = Group.objects.get_or_create(name=role)
    if created or not group.permissions.exists():
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label="ocrapp", codename__in=roles.ROLE_PERMISSIONS[role]
            )
        )
    user.groups.add(group)
    return user


def person(username: str, role: str, *, first: str = "", last: str = "", stations=()):
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, first_name=first, last_name=last
    )
    grant(user, role)
    for station in stations:
        station.members.add(user)
    return user


def queued_result(
    serial: str,
    *,
    confidence: float = 0.6,
    raw: str | None = None,
    mislabel: str | None = None,
    invalid_part: bool = False,
    alternatives: dict[int, list[tuple[str, float]]] | None = None,
) -> dict:
    """A two-line read (serial, part number) that needs review: the serial below the auto-accept
    confidence; ``raw``: what the recogniser read on the serial's line (the pipeline corrected it
    to ``serial``); ``mislabel``: a code on the label carries this other serial;
    ``invalid_part``: the part number failed its check; ``alternatives``: the recogniser's
    alternatives at positions of the serial's line text."""
    base = read_result(serial)
    line0, line1 = base.lines
    text = f"S/N: {raw or serial}"
    alts: list[tuple[tuple[str, float], ...]] = [((ch, 0.99),) for ch in text]
    confs = [0.99] * len(text)
    for pos, options in (alternatives or {}).items():
        alts[pos] = tuple(options)
        confs[pos] = options[0][1]
    line0 = replace(line0, text=text, char_confidences=tuple(confs), alternatives=tuple(alts))
    serial_f, part_f = base.fields
    serial_f = replace(serial_f, raw_value=raw or serial, confidence=confidence)
    reasons = [
        ReviewReason(
            "low_confidence",
            "serial_number",
            f"confidence {confidence:.2f} is below the auto-accept threshold",
            {"confidence": confidence, "threshold": AUTO_ACCEPT},
        )
    ]
    mismatches: tuple = ()
    if mislabel:
        serial_f = replace(serial_f, code_value=mislabel, code_match=False)
        mismatches = (
            {
                "field": "serial_number",
                "printed": serial,
                "coded": mislabel,
                "code_format": "DataMatrix",
                "source": "gs1:21",
            },
        )
        reasons.append(
            ReviewReason(
                "mislabel",
                "serial_number",
                "printed and coded disagree",
                {"printed": serial, "coded": mislabel, "code_format": "DataMatrix"},
            )
        )
    if invalid_part:
        why = "does not match the pattern"
        part_f = replace(part_f, valid=False, reason=why, reasons=(("pattern", why),))
        reasons.append(ReviewReason("invalid", "part_number", why))
    return replace(
        base,
        lines=(line0, line1),
        fields=(serial_f, part_f),
        mismatches=mismatches,
        review=ReviewDecision(needs_review=True, auto_accept=AUTO_ACCEPT, reasons=tuple(reasons)),
    ).to_dict()


def accepted_result(serial: str) -> dict:
    return replace(
        read_result(serial), review=ReviewDecision(needs_review=False, auto_accept=AUTO_ACCEPT)
    ).to_dict()


def stored_capture(user, station, product_type, result: dict | None, *, raw_label: str = ""):
    """A capture of a rendered label; read with ``result`` (None: left PENDING)."""
    serial = next(
        (f["value"] for f in (result or {}).get("fields", []) if f["name"] == "serial_number"), ""
    )
    photo = label_png([f"S/N: {raw_label or serial or 'X1'}", "P/N: PN-7731"], size=(900, 420))
    capture, created = services.capture_create(
        user=user,
        image_bytes=photo,
        original_filename="label.png",
        product_type=product_type,
        station=station,
    )
    assert created
    if result is not None:
        assert services.capture_claim(capture_id=capture.pk) is not None
        assert services.read_save(capture_id=capture.pk, result=result, worker="test") is not None
    return Capture.objects.get(pk=capture.pk)


def failed_capture(user, station, product_type) -> Capture:
    capture = stored_capture(user, station, product_type, None)
    assert services.capture_claim(capture_id=capture.pk) is not None
    assert services.capture_fail(capture_id=capture.pk, code="timeout", reason="too slow")
    return Capture.objects.get(pk=capture.pk)
