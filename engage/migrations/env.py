"""The Alembic environment of engage's own branch, for engage's developers.

A host never runs this file: its own ``env.py`` runs engage's revisions (see
:mod:`engage.migrations`). ``python -m engage.migrations`` uses it to compare
:data:`engage.models.metadata` with what the revisions make and to write the next revision.
It targets engage's tables only.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from engage import models
from engage.migrations import _table_name, is_engage_table, render_item

config = context.config


def _only_engage(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return is_engage_table(_table_name(obj, name, type_))


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=models.metadata,
        include_object=_only_engage,
        render_item=render_item,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
