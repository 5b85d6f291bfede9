"""The roles of ``ocrapp.roles`` as groups with their permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from ocrapp.roles import ADMIN, ROLE_PERMISSIONS


def create_roles(apps, schema_editor):  # noqa: ARG001
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = Permission.objects.filter(content_type__app_label="ocrapp", codename__in=codes)
        if role == ADMIN:
            perms = Permission.objects.all()
        group.permissions.set(perms)


class Migration(migrations.Migration):
    dependencies = [
        ("ocrapp", "0004_audit_trail_roles"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
