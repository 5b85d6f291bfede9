"""Plain DRF tokens become hashed ApiTokens; station service users get the line_client role.

- Every row of ``authtoken_token`` (``rest_framework.authtoken``, keys in plain text) becomes an
  ``ApiToken`` holding the key's sha256 and prefix, for the same user (and that user's station),
  so line software keeps its key. The plain table is dropped (no plain key is left behind) and
  authtoken's migration records are removed. Each migrated token gets an audit row.
- Users that own a station's token join the ``line_client`` group (they keep uploading).
- The role groups are synced again, so ``admin`` also holds the ApiToken permissions.
"""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations

from ocrapp import audit
from ocrapp.roles import LINE_CLIENT, sync_groups
from ocrapp.tokens import hash_key, key_prefix

LEGACY_TABLE = "authtoken_token"


def sync_roles(apps, schema_editor):  # noqa: ARG001
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def service_users_join_line_client(apps, schema_editor):  # noqa: ARG001
    Group = apps.get_model("auth", "Group")
    Station = apps.get_model("ocrapp", "Station")
    group = Group.objects.get(name=LINE_CLIENT)
    for station in Station.objects.exclude(token_owner=None).select_related("token_owner"):
        station.token_owner.groups.add(group)


def hash_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cur:
        if LEGACY_TABLE not in connection.introspection.table_names(cur):
            return
        cur.execute(f"SELECT key, created, user_id FROM {LEGACY_TABLE} ORDER BY created, key")
        rows = cur.fetchall()
    ApiToken = apps.get_model("ocrapp", "ApiToken")
    Station = apps.get_model("ocrapp", "Station")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    for key, created, user_id in rows:
        station = Station.objects.filter(token_owner_id=user_id).first()
        token = ApiToken.objects.create(
            key_hash=hash_key(key),
            prefix=key_prefix(key),
            user_id=user_id,
            station=station,
            name="migrated from authtoken",
            created_at=created,
        )
        audit.record(
            actor=None,
            action="api_token.migrate",
            object_type="ocrapp.apitoken",
            object_id=str(token.pk),
            object_repr=f"{token.prefix}…",
            after={
                "prefix": token.prefix,
                "user": User.objects.get(pk=user_id).username,
                "station": f"{station.line} / {station.name}" if station else None,
            },
            reason="plain-text token replaced by its sha256 (migration 0007_roles_hash_tokens)",
        )
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE {LEGACY_TABLE}")
        cur.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


def forwards(apps, schema_editor):
    sync_roles(apps, schema_editor)
    service_users_join_line_client(apps, schema_editor)
    hash_plain_tokens(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("ocrapp", "0006_roles_api_token"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    # Backwards keeps the ApiTokens (the plain keys cannot be restored from their hashes).
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
