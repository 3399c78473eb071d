"""engage's schema as its own Alembic branch, run by a host's plain Alembic (README "Migrations").

A host whose ``env.py`` uses :mod:`engage.migrations` upgrades to engage's head beside its own,
downgrades engage alone, gets exactly :data:`engage.models.metadata` from the revisions (the
test that tells whoever adds a column to write a revision), and its autogenerate neither sees
engage's tables nor writes into engage's folder. Flask-Migrate's side is in test_embed.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

alembic = pytest.importorskip("alembic")

from alembic import command  # noqa: E402
from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402

from engage import models  # noqa: E402
from engage.migrations import VERSIONS, add_version_location, include_object  # noqa: E402
from engage.migrations.develop import schema_differences  # noqa: E402

#: A plain Alembic env.py of a host, as README "Migrations" shows it; the host's metadata and
#: connection come from the test through ``config.attributes``.
HOST_ENV = """
from alembic import context
from engage.migrations import alembic_options

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=config.attributes["metadata"],
    **alembic_options(),
)
with context.begin_transaction():
    context.run_migrations()
"""

HOST_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "host_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "host_donor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("host_donor")
"""

ENGAGE_TABLES = set(models.metadata.tables)


def host_metadata(*extra: sa.Column) -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "host_donor",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        *extra,
    )
    return metadata


@pytest.fixture
def engine(database_url):
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def host(tmp_path: Path, engine):
    """A host's Alembic folder (env.py, one revision of its own) with engage's branch added."""
    folder = tmp_path / "migrations"
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(HOST_ENV)
    (folder / "script.py.mako").write_text(
        (Path(alembic.__file__).parent / "templates/generic/script.py.mako").read_text()
    )
    (folder / "versions" / "host_0001_donors.py").write_text(HOST_REVISION)

    def run(action, *args, metadata=None, **kwargs):
        config = Config()
        config.set_main_option("script_location", str(folder))
        add_version_location(config)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["metadata"] = metadata if metadata is not None else host_metadata()
            return action(config, *args, **kwargs)

    run.folder = folder
    return run


def tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_heads_makes_the_hosts_and_engages_tables_and_engage_head_is_exactly_the_models(
    host, engine
):
    host(command.upgrade, "heads")
    assert ENGAGE_TABLES | {"host_donor", "alembic_version"} == tables(engine)
    with engine.connect() as connection:
        versions = set(
            connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        )
        problems = schema_differences(connection)
    assert versions == {"host_0001", ScriptDirectory(str(VERSIONS.parent)).get_current_head()}
    assert problems == [], (
        "engage.models has tables or columns that no revision of engage's branch makes: "
        "write one with `python -m engage.migrations revision -m ...` (README 'Migrations')"
    )


def test_engage_downgrades_alone_and_upgrades_again(host, engine):
    host(command.upgrade, "heads")
    host(command.downgrade, "engage@base")
    assert tables(engine) == {"host_donor", "alembic_version"}
    host(command.upgrade, "engage@head")
    assert tables(engine) >= ENGAGE_TABLES
    with engine.connect() as connection:
        assert schema_differences(connection) == []


def test_the_check_names_a_column_and_a_table_that_no_revision_makes(host, engine):
    host(command.upgrade, "engage@head")
    grown = sa.MetaData()
    for table in models.metadata.tables.values():
        table.to_metadata(grown)
    grown.tables["engage_email"].append_column(sa.Column("priority", sa.Integer))
    sa.Table("engage_novelty", grown, sa.Column("id", sa.Integer, primary_key=True))
    with engine.connect() as connection:
        problems = schema_differences(connection, grown)
    assert sorted(problems) == [
        "column engage_email.priority is missing",
        "table engage_novelty is missing",
    ]


def test_without_engages_include_object_autogenerate_would_drop_engages_tables(host, engine):
    host(command.upgrade, "heads")
    with engine.connect() as connection:
        blind = compare_metadata(MigrationContext.configure(connection), host_metadata())
        seeing = compare_metadata(
            MigrationContext.configure(connection, opts={"include_object": include_object}),
            host_metadata(),
        )
    assert {d[1].name for d in blind if d[0] == "remove_table"} == ENGAGE_TABLES
    assert seeing == []


def test_a_new_host_revision_goes_on_the_hosts_branch_in_the_hosts_folder(host, engine):
    engages_own = sorted(VERSIONS.glob("*.py"))
    host(command.upgrade, "heads")
    nickname = sa.Column("nickname", sa.String(50))
    host(command.revision, "nickname", autogenerate=True, metadata=host_metadata(nickname))
    written = sorted(host.folder.joinpath("versions").glob("*_nickname.py"))
    assert len(written) == 1
    text = written[0].read_text()
    assert "down_revision: Union[str, Sequence[str], None] = 'host_0001'" in text
    assert "add_column('host_donor'" in text or 'add_column("host_donor"' in text
    assert "engage_" not in text
    assert sorted(VERSIONS.glob("*.py")) == engages_own


def test_a_host_without_revisions_starts_its_own_branch_beside_engages(host, engine):
    next(host.folder.joinpath("versions").glob("host_0001*")).unlink()
    host(command.upgrade, "heads")
    assert tables(engine) == ENGAGE_TABLES | {"alembic_version"}
    host(command.revision, "donors", autogenerate=True)
    written = list(host.folder.joinpath("versions").glob("*_donors.py"))
    assert len(written) == 1
    text = written[0].read_text()
    assert "down_revision: Union[str, Sequence[str], None] = None" in text
    assert "create_table('host_donor'" in text and "engage_" not in text
    host(command.upgrade, "heads")
    assert "host_donor" in tables(engine)


def test_adding_the_version_location_twice_adds_it_once():
    config = Config()
    config.set_main_option("script_location", "/srv/crm/migrations")
    add_version_location(add_version_location(config))
    assert config.get_version_locations_list() == ["/srv/crm/migrations/versions", str(VERSIONS)]


def test_an_alembic_ini_names_engages_folder_as_a_package_resource(host, engine, tmp_path):
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        "[alembic]\n"
        "script_location = %(here)s/migrations\n"
        "path_separator = space\n"
        "version_locations = %(here)s/migrations/versions engage:migrations/versions\n"
    )
    config = Config(str(ini))
    with engine.begin() as connection:
        config.attributes.update(connection=connection, metadata=host_metadata())
        command.upgrade(config, "heads")
    assert tables(engine) == ENGAGE_TABLES | {"host_donor", "alembic_version"}
