"""``python -m engage.migrations``: engage's developers check the revisions against the models,
and draft the next revision.

    python -m engage.migrations check              # exit 1 when the models and revisions differ
    python -m engage.migrations revision -m TEXT   # draft the next revision from the difference
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import sqlalchemy as sa
from alembic import command

from . import BRANCH
from .develop import engage_config, schema_differences, write_revision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engage.migrations", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="compare what engage@head makes with engage.models")
    revision = sub.add_parser("revision", help="draft the next revision of engage's branch")
    revision.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)

    if args.command == "revision":
        path = write_revision(args.message)
        print(f"wrote {path}" if path else "engage's models and revisions agree: nothing to write")
        return 0

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/check.sqlite3"
        command.upgrade(engage_config(url), f"{BRANCH}@head")
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            problems = schema_differences(connection)
        engine.dispose()
    for problem in problems:
        print(problem)
    if problems:
        print(
            "engage.models has what no revision makes: python -m engage.migrations revision -m ..."
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
