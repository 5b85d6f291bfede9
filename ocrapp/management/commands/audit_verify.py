"""``manage.py audit_verify``: recompute the audit trail's hash chain (name the first broken
row), then check the data against the trail: every search index row matches its field's current
value, and every field's value is what the trail last recorded for it. Names each problem (the
first ``--limit`` of each kind) and exits 1 when there is any."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ocrapp.audit import verify_chain, verify_field_values, verify_search_index


class Command(BaseCommand):
    help = (
        "Verify the hash chain of the audit trail (name the first broken row), the search index "
        "against the fields, and each field's value against the audit trail."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit",
            type=int,
            default=20,
            help="Name at most this many problems of each kind (default 20).",
        )

    def handle(self, *args, **options):
        limit = max(1, options["limit"])
        problems: list[str] = []
        n, broken = verify_chain()
        if broken is not None:
            what = (
                "its content was altered"
                if broken.reason == "hash"
                else ("its link to the row before it is broken (a row was removed or inserted)")
            )
            problems.append(
                f"audit trail broken at event #{broken.event_id}: {what} ({n} rows read)"
            )
        counts: dict[str, int] = {}
        for label, check in (
            ("search index", verify_search_index),
            ("field values", verify_field_values),
        ):
            found = 0
            for mismatch in check():
                found += 1
                if found <= limit:
                    problems.append(mismatch.message)
            if found > limit:
                problems.append(f"… and {found - limit} more {label} problems")
            counts[label] = found
        if problems:
            raise CommandError("\n".join([*problems, self._summary(broken, counts)]))
        self.stdout.write(
            f"audit trail intact: {n} events; search index and field values match the trail"
        )

    @staticmethod
    def _summary(broken, counts: dict[str, int]) -> str:
        parts = ["hash chain broken" if broken is not None else "hash chain intact"]
        parts += [f"{count} {label} problem(s)" for label, count in counts.items()]
        return "integrity check failed: " + ", ".join(parts)
