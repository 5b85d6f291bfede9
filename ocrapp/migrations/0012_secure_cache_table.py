"""The database cache table (``ocrapp_cache``) when ``CACHES`` uses it (CACHE_URL=db, or a
broker that is not Redis): rate limits and login lockouts are shared through it. Nothing to do
with the Redis cache. ``manage.py createcachetable`` does the same after a later switch."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("ocrapp", "0011_merge_reliability")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
