"""engage's Alembic revisions, the branch ``engage`` (see :mod:`engage.migrations`).

Each file is one revision; Alembic reads them by path and skips this ``__init__.py``, which
is here so that the folder is a package and every wheel and sdist carries it. A revision
imports neither engage nor its models: it writes the schema as it was at that revision.
"""
