"""The sender's language on each email (SPEC S45).

Revision ID: engage_0004
Revises: engage_0003
Create Date: 2026-11-30

What engage adds to a sent message (the block of followed attachments) is written in the
sender's language, kept on the email when it is written; rows from before have none and are
written in the app's default language.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Revision identifiers, used by Alembic.
revision = "engage_0004"
down_revision = "engage_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engage_email") as batch:
        batch.add_column(sa.Column("language", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("engage_email") as batch:
        batch.drop_column("language")
