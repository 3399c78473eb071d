"""engage's schema as its own Alembic version branch, and what a host's ``env.py`` needs.

engage's revisions live in :data:`VERSIONS` (``engage/migrations/versions/``), a branch of
their own (``branch_labels=("engage",)``) with its own base, so they never mix with the host's
revisions: the host adds :data:`VERSIONS` to its ``version_locations`` and runs
``flask db upgrade heads`` (or ``alembic upgrade heads``; ``engage@head`` upgrades engage
alone). A later engage release adds revisions to the branch, which migrate existing data.

For the host's autogenerate (``flask db migrate``), engage's tables are not the host's
business: :func:`include_object` keeps them out of every comparison (the host's
``target_metadata`` does not have them, so without it Alembic would propose to drop them), and
:func:`process_revision_directives` bases a new host revision on the host's own head and puts
it in the host's folder, never in engage's. :func:`render_item` writes engage's column types as
plain SQLAlchemy types (``sa.DateTime()``), for anyone who autogenerates against
:data:`engage.models.metadata`.

With Flask-Migrate, one call sets all of it up::

    migrate = Migrate(app, db)
    configure_flask_migrate(migrate)

With plain Alembic, add :data:`VERSIONS` to ``version_locations`` (or call
:func:`add_version_location` on the ``Config``) and pass the three functions to
``context.configure`` in ``env.py`` (README "Migrations").

Nothing here imports Alembic at import time, so ``import engage.migrations`` works without it;
the functions that need it are for hosts that have it (``pip install engage[migrations]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.config import Config
    from alembic.operations.ops import MigrationScript
    from alembic.runtime.migration import MigrationContext

__all__ = [
    "BRANCH",
    "TABLE_PREFIX",
    "VERSIONS",
    "add_version_location",
    "alembic_options",
    "configure_flask_migrate",
    "include_object",
    "is_engage_table",
    "process_revision_directives",
    "render_item",
]

#: Under "alembic", so that the logging Alembic and Flask-Migrate set up shows it.
log = logging.getLogger("alembic.engage")

#: The folder of engage's Alembic revisions, to add to a host's ``version_locations``.
VERSIONS = Path(__file__).resolve().parent / "versions"

#: The branch label of engage's revisions: ``flask db upgrade engage@head``.
BRANCH = "engage"

#: Every table engage makes, now or in a later release, starts with this; a host's own tables
#: must not.
TABLE_PREFIX = "engage_"


def is_engage_table(name: str | None) -> bool:
    """True for the name of one of engage's tables."""
    return bool(name) and str(name).startswith(TABLE_PREFIX)


def _table_name(obj: Any, name: str | None, type_: str) -> str | None:
    """The name of the table ``obj`` (a table, column, index or constraint) belongs to."""
    if type_ == "table":
        return name
    table = getattr(obj, "table", None)
    return getattr(table, "name", None)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object`` for a host: leaves engage's tables out of autogenerate.

    engage's tables (and their columns, indexes and constraints) are made and changed only by
    engage's own revisions; the host's ``flask db migrate`` neither creates, changes nor drops
    them. Everything else is included. To combine it with an ``include_object`` of your own,
    call both: ``include_object(...) and your_include_object(...)``.
    """
    return not is_engage_table(_table_name(obj, name, type_))


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Alembic's ``render_item``: engage's column types written as plain SQLAlchemy types.

    A revision must not import engage (the types of a later release may differ), and
    ``engage.models.UTCDateTime()`` rendered without its import fails the upgrade with a
    ``NameError``. So engage's :class:`~engage.models.UTCDateTime` is written as the
    ``sa.DateTime()`` it is stored as, and its enums, kept as plain strings, as
    ``sa.String(length=...)``. Anything else is left to Alembic (``False``).
    """
    if type_ != "type":
        return False
    if isinstance(obj, sa.types.TypeDecorator) and type(obj).__module__.startswith("engage."):
        return f"sa.{obj.impl!r}"
    if isinstance(obj, sa.Enum) and not obj.native_enum and not obj.create_constraint:
        return f"sa.String(length={obj.length})"
    return False


def _is_engage_revision(script: Any) -> bool:
    path = getattr(script, "path", None)
    in_folder = path is not None and Path(path).resolve().parent == VERSIONS
    return in_folder or BRANCH in (getattr(script, "branch_labels", None) or ())


def _host_locations(script_directory: Any) -> list[Path]:
    """The version folders of a ``ScriptDirectory`` that are not engage's."""
    locations = [Path(p) for p in getattr(script_directory, "_version_locations", ())]
    return [p for p in locations if p.resolve() != VERSIONS]


def process_revision_directives(
    context: MigrationContext, revision: Any, directives: list[MigrationScript]
) -> None:
    """Alembic's ``process_revision_directives``: a new host revision goes on the host's branch.

    With engage's branch beside the host's there are two heads, and Alembic would refuse
    ``flask db migrate`` ("Multiple heads are present") or, for a host without revisions yet,
    base the new revision on engage's head and write it into engage's installed package. So a
    revision asked for on ``head`` (the default) is based on the host's own head, or on
    ``base`` in the host's first version folder when the host has none. A revision asked for
    on ``engage@head`` (or any explicit head) is left as asked.
    """
    scripts = context.script
    if scripts is None:
        return
    for directive in directives:
        if directive.head != "head" or directive.splice:
            continue
        heads = [scripts.get_revision(h) for h in scripts.get_heads()]
        engage_heads = [h for h in heads if h is not None and _is_engage_revision(h)]
        if not engage_heads:
            continue  # engage's branch is not among this host's version locations
        own = [h for h in heads if h is not None and not _is_engage_revision(h)]
        if len(own) == 1:
            directive.head = own[0].revision
        elif not own:
            directive.head = "base"
            if directive.version_path is None:
                locations = _host_locations(scripts)
                if locations:
                    directive.version_path = str(locations[0])
        # Several heads of the host's own: Alembic asks the host to choose or merge, as usual.


def _separator(config: Config) -> str | None:
    for option in ("path_separator", "version_path_separator"):
        value = config.get_main_option(option)
        if value is not None:
            return {"space": " ", "newline": "\n", "os": os.pathsep}.get(value, value)
    return None


def add_version_location(config: Config) -> Config:
    """Add engage's revisions (:data:`VERSIONS`) to an Alembic ``Config``'s ``version_locations``.

    The host's own folder stays first: when ``version_locations`` was not set, that is
    ``<script_location>/versions``, Alembic's default. Calling it again changes nothing. It
    returns the config, so it serves as a Flask-Migrate ``configure`` callback as it is.
    """
    locations = config.get_version_locations_list() or []
    if not locations:
        script_location = config.get_main_option("script_location") or ""
        if ":" in script_location and not os.path.isabs(script_location):
            from alembic.util import coerce_resource_to_filename

            script_location = str(coerce_resource_to_filename(script_location))
        locations = [os.path.join(script_location, "versions")]
    if any(os.path.isabs(p) and Path(p).resolve() == VERSIONS for p in locations):
        return config
    locations.append(str(VERSIONS))
    separator = _separator(config)
    if separator is None:
        separator = os.pathsep
        # Name the separator, so that Alembic needs no legacy guess (and warns of none).
        config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations", separator.join(p.replace("%", "%%") for p in locations)
    )
    return config


# -- Flask-Migrate -------------------------------------------------------------------------------


def _marked(function: Callable[..., Any]) -> Callable[..., Any]:
    function._engage = True  # type: ignore[attr-defined]
    return function


def _flask_migrate_hooks(args: dict[str, Any], config: Config) -> None:
    """Put engage's hooks into Flask-Migrate's ``configure_args``, keeping the host's own."""
    host_include = args.get("include_object")
    if not getattr(host_include, "_engage", False):

        def include(*a: Any) -> bool:
            return include_object(*a) and (host_include is None or bool(host_include(*a)))

        args["include_object"] = _marked(include)

    host_render = args.get("render_item")
    if not getattr(host_render, "_engage", False):

        def render(type_: str, obj: Any, autogen_context: Any) -> Any:
            rendered = render_item(type_, obj, autogen_context)
            if rendered is False and host_render is not None:
                return host_render(type_, obj, autogen_context)
            return rendered

        args["render_item"] = _marked(render)

    host_directives = args.get("process_revision_directives")
    if not getattr(host_directives, "_engage", False):

        def directives(context: Any, revision: Any, scripts: list[Any]) -> None:
            process_revision_directives(context, revision, scripts)
            if host_directives is not None:
                host_directives(context, revision, scripts)
                return
            # What Flask-Migrate's env.py does when no hook is given, which ours replaces:
            # an autogenerate that finds nothing writes no revision.
            cmd_opts = getattr(context.config, "cmd_opts", None) if context.config else None
            autogenerate = getattr(cmd_opts, "autogenerate", False)
            if scripts and autogenerate and scripts[0].upgrade_ops.is_empty():
                scripts[:] = []
                log.info("No changes in schema detected.")

        args["process_revision_directives"] = _marked(directives)


def configure_flask_migrate(migrate: Any) -> None:
    """Set up a Flask-Migrate ``Migrate`` for engage's branch; call it once, in any order.

    Each ``flask db`` command then sees engage's revisions (:func:`add_version_location`), runs
    ``env.py`` also for a plain ``flask db revision`` (so that a new revision goes on the
    host's branch), and passes :func:`include_object`, :func:`render_item` and
    :func:`process_revision_directives` to ``context.configure``, combined with any the host
    gave ``Migrate(...)``. Flask-Migrate's generated ``env.py`` needs no change.
    """

    def configure(config: Config) -> Config:
        from flask import current_app

        add_version_location(config)
        config.set_main_option("revision_environment", "true")
        _flask_migrate_hooks(current_app.extensions["migrate"].configure_args, config)
        return config

    migrate.configure(configure)


def alembic_options() -> dict[str, Callable[..., Any]]:
    """The keyword arguments engage asks of ``context.configure`` in a plain Alembic ``env.py``."""
    return {
        "include_object": include_object,
        "render_item": render_item,
        "process_revision_directives": process_revision_directives,
    }
