"""Merge of the audit-trail (0006_audit_history_withdrawal) and review + roles (0008) branches;
the role groups are synced again so the admin role holds the permissions all of them added."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from ocrapp.roles import sync_groups


def sync_roles(apps, schema_editor):  # noqa: ARG001
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("ocrapp", "0006_audit_history_withdrawal"),
        ("ocrapp", "0008_merge_review_roles"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
