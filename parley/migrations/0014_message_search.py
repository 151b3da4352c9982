"""The full-text index of messages, in each database's own kind (parley/search/schema.py):
nothing in the migration state, nothing on databases other than PostgreSQL and SQLite (their
search reads the table itself). The messages there are already are indexed here."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from parley.conf import get_config
from parley.search.schema import search_schema_create, search_schema_drop


def create(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    search_schema_create(schema_editor.connection, config=get_config().search_config)


def drop(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    search_schema_drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("parley", "0013_usage_quotas")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
