"""Export (issue 13, point 5): line clients (a station's own reads, for its line software) and
auditors (read-only: an export is a read) may export too; the role groups are synced again."""

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
    dependencies = [("ocrapp", "0014_merge_search")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
