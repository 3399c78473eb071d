"""Tools for engage's developers: is every table and column of the models in a revision, and
the next revision written from the difference (``python -m engage.migrations``).

Whoever adds a table or a column to :mod:`engage.models` writes a revision for it on engage's
branch, so that hosts that installed an earlier release get it with ``flask db upgrade heads``;
``tests/test_migrations.py`` fails until then, and :func:`write_revision` drafts it.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .. import models
from . import BRANCH, VERSIONS, _table_name, is_engage_table

HERE = Path(__file__).resolve().parent


def engage_config(url: str = "sqlite://", connection: sa.Connection | None = None) -> Config:
    """An Alembic config of engage's branch alone, on ``url`` or an open ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _only_engage(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return is_engage_table(_table_name(obj, name, type_))


def _sorted_index_columns(index: sa.Index) -> list[str] | None:
    """``["record_type", "occurred_at desc"]`` for an index with a sort order, else ``None``."""
    columns = []
    for expr in index.expressions:
        if isinstance(expr, sa.UnaryExpression) and expr.modifier is sa.sql.operators.desc_op:
            columns.append(f"{expr.element} desc")
        else:
            columns.append(str(getattr(expr, "name", expr)))
    return columns if any(c.endswith(" desc") for c in columns) else None


def _index_definition(connection: sa.Connection, name: str) -> list[str] | None:
    """The columns of the database's index ``name`` as its DDL has them, or ``None``."""
    if connection.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    elif connection.dialect.name == "postgresql":
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    else:  # pragma: no cover - engage is tested on SQLite and PostgreSQL
        return None
    ddl = connection.execute(sa.text(query), {"name": name}).scalar()
    if ddl is None:
        return None
    inside = ddl[ddl.index("(") + 1 : ddl.rindex(")")]
    return [" ".join(part.replace('"', "").lower().split()) for part in inside.split(",")]


def _sorted_indexes(connection: sa.Connection, metadata: sa.MetaData) -> list[str]:
    """Indexes with a sort order (``occurred_at DESC``) that the database lacks or has wrong.

    Alembic does not compare such indexes (on SQLite it cannot reflect the order and skips
    them with a warning), so they are compared here, on the index's own DDL.
    """
    problems = []
    for table in metadata.sorted_tables:
        for index in table.indexes:
            wanted = _sorted_index_columns(index)
            if wanted is None or index.name is None:
                continue
            have = _index_definition(connection, index.name)
            if have is None:
                problems.append(f"index {index.name} on {table.name} is missing")
            elif have != wanted:
                problems.append(f"index {index.name} on {table.name} is {have}, not {wanted}")
    return problems


def _sorted_index_names(metadata: sa.MetaData) -> set[str]:
    return {
        str(index.name)
        for table in metadata.tables.values()
        for index in table.indexes
        if _sorted_index_columns(index) is not None
    }


def schema_differences(
    connection: sa.Connection, metadata: sa.MetaData = models.metadata
) -> list[str]:
    """What the database behind ``connection`` lacks, or has otherwise, of engage's models.

    Run it on a database brought to ``engage@head``: an empty list means the revisions make
    exactly ``metadata`` (:data:`engage.models.metadata`): tables, columns and their types,
    nullability, indexes (with their sort order), unique and foreign key constraints.
    """
    context = MigrationContext.configure(
        connection, opts={"include_object": _only_engage, "compare_type": True}
    )
    with warnings.catch_warnings():
        # Alembic's word that it skips the indexes with a sort order: _sorted_indexes has them.
        warnings.filterwarnings("ignore", "autogenerate skipping", UserWarning)
        diffs = compare_metadata(context, metadata)
    sorted_names = _sorted_index_names(metadata)
    found = [_describe(diff, sorted_names) for diff in diffs]
    return [d for d in found if d is not None] + _sorted_indexes(connection, metadata)


def _describe(diff: Any, sorted_names: set[str]) -> str | None:
    if isinstance(diff, list):  # a column's changes come as a list of modifications
        return "; ".join(filter(None, (_describe(d, sorted_names) for d in diff))) or None
    kind = diff[0]
    if kind in ("add_index", "remove_index") and diff[1].name in sorted_names:
        return None  # compared by _sorted_indexes, which knows their order
    if kind == "add_table":
        return f"table {diff[1].name} is missing"
    if kind == "add_column":
        return f"column {diff[2]}.{diff[3].name} is missing"
    return " ".join(str(part) for part in diff)


def next_revision_id(scripts: ScriptDirectory) -> str:
    """``engage_0002`` after ``engage_0001``: engage's revision ids count up."""
    numbers = [
        int(m.group(1))
        for rev in scripts.walk_revisions()
        if (m := re.fullmatch(r"engage_(\d+)", rev.revision))
    ]
    return f"engage_{max(numbers, default=0) + 1:04d}"


def write_revision(message: str) -> Path | None:
    """Draft the next revision of engage's branch from what the models have and it lacks.

    It upgrades a scratch SQLite database to ``engage@head``, autogenerates the difference
    into :data:`VERSIONS` and returns the new file, or ``None`` when there is no difference.
    Read the draft before committing it: a renamed column comes out as a drop and an add,
    and data to carry over needs code of your own.
    """
    with tempfile.TemporaryDirectory() as folder:
        config = engage_config(f"sqlite:///{folder}/draft.sqlite3")
        scripts = ScriptDirectory.from_config(config)
        first = not scripts.get_heads()
        if not first:
            command.upgrade(config, f"{BRANCH}@head")
        before = set(VERSIONS.glob("*.py"))
        command.revision(
            config,
            message,
            autogenerate=True,
            head="base" if first else f"{BRANCH}@head",
            branch_label=BRANCH if first else None,
            version_path=str(VERSIONS),
            rev_id=next_revision_id(scripts),
            process_revision_directives=_draft_hook,
        )
        written = set(VERSIONS.glob("*.py")) - before
    return written.pop() if written else None


def _draft_hook(context: Any, revision: Any, directives: list[Any]) -> None:
    """Leave out what Alembic gets wrong about the sorted indexes, and write nothing empty.

    On SQLite Alembic reflects ``occurred_at DESC`` as ``occurred_at`` and so proposes to drop
    and recreate a sorted index that is right; such an index is kept out of the draft when
    its DDL in the database is what the models ask for.
    """
    from alembic.operations import ops

    fine = {
        str(index.name)
        for table in models.metadata.tables.values()
        for index in table.indexes
        if (wanted := _sorted_index_columns(index)) is not None
        and _index_definition(context.connection, str(index.name)) == wanted
    }

    def keep(op: Any) -> bool:
        if isinstance(op, ops.ModifyTableOps):
            op.ops = [o for o in op.ops if keep(o)]
            return bool(op.ops)
        return getattr(op, "index_name", None) not in fine

    for script in directives:
        for container in (*script.upgrade_ops_list, *script.downgrade_ops_list):
            container.ops = [o for o in container.ops if keep(o)]
    if directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []
