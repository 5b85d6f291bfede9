"""The audit trail: append-only in PostgreSQL, hash-chained, verified by a command."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError

from ocrapp import audit
from ocrapp.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _three(user):
    for i in range(3):
        audit.record(
            actor=user,
            action="update",
            object_type="ocrapp.station",
            object_id=str(i),
            object_repr=f"LINE-1 / S{i}",
            before={"name": f"S{i}"},
            after={"name": f"T{i}", "n": 0.1 * i},
            reason="rename",
        )
    return list(AuditEvent.objects.order_by("id"))


def test_rows_chain_and_carry_the_printed_name(user):
    user.first_name, user.last_name = "Ada", "Kim"
    user.save()
    rows = _three(user)
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert rows[0].actor_name == "Ada Kim (operator)"
    assert audit.verify_chain() == (3, None)
    call_command("audit_verify")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ocrapp_auditevent SET reason = 'x'",
        "DELETE FROM ocrapp_auditevent",
    ],
)
def test_postgres_refuses_update_and_delete(user, sql):
    _three(user)
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql)
    assert AuditEvent.objects.count() == 3


def _behind_the_trigger(sql: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("ALTER TABLE ocrapp_auditevent DISABLE TRIGGER USER")
        cur.execute(sql, params)
        cur.execute("ALTER TABLE ocrapp_auditevent ENABLE TRIGGER USER")


def test_verifier_names_a_row_altered_with_the_trigger_disabled(user):
    rows = _three(user)
    _behind_the_trigger(
        "UPDATE ocrapp_auditevent SET after = %s WHERE id = %s", ['{"name": "forged"}', rows[1].pk]
    )
    assert audit.verify_chain() == (2, audit.ChainBreak(rows[1].pk, "hash"))
    with pytest.raises(CommandError, match=f"event #{rows[1].pk}: its content was altered"):
        call_command("audit_verify")


def test_verifier_names_the_row_after_a_deleted_one(user):
    rows = _three(user)
    _behind_the_trigger("DELETE FROM ocrapp_auditevent WHERE id = %s", [rows[1].pk])
    assert audit.verify_chain()[1] == audit.ChainBreak(rows[2].pk, "link")
