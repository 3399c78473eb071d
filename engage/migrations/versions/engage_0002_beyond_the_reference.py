"""Out-of-office absences, recipients' own opt-outs, and reminders on links and files.

Revision ID: engage_0002
Revises: engage_0001
Create Date: 2026-11-30

SPEC S41 (a reminder may watch one recipient and one followed file), S42 (``engage_absence``)
and S43 (``engage_tracking_opt_out``, and when a recipient's copy stopped being tracked).
Foreign keys on existing tables are added in batch mode, which SQLite needs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Revision identifiers, used by Alembic.
revision = "engage_0002"
down_revision = "engage_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engage_absence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("record_type", sa.String(length=50), nullable=True),
        sa.Column("record_id", sa.String(length=100), nullable=True),
        sa.Column("noted_at", sa.DateTime(), nullable=False),
        sa.Column("return_date", sa.Date(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["engage_event.id"],
            name=op.f("fk_engage_absence_event_id_engage_event"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_absence")),
        sa.UniqueConstraint("event_id", name=op.f("uq_engage_absence_event_id")),
    )
    op.create_index("ix_engage_absence_address", "engage_absence", ["address", "until"])
    op.create_table(
        "engage_tracking_opt_out",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("record_type", sa.String(length=50), nullable=True),
        sa.Column("record_id", sa.String(length=100), nullable=True),
        sa.Column("in_adapter", sa.Boolean(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=True),
        sa.Column("opted_out_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["party_id"],
            ["engage_party.id"],
            name=op.f("fk_engage_tracking_opt_out_party_id_engage_party"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_tracking_opt_out")),
        sa.UniqueConstraint("address", name=op.f("uq_engage_tracking_opt_out_address")),
    )
    with op.batch_alter_table("engage_party") as batch:
        batch.add_column(sa.Column("opted_out_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("engage_reminder") as batch:
        batch.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("attachment_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_engage_reminder_attachment_id_engage_attachment",
            "engage_attachment",
            ["attachment_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("engage_reminder") as batch:
        batch.drop_constraint(
            "fk_engage_reminder_attachment_id_engage_attachment", type_="foreignkey"
        )
        batch.drop_column("attachment_id")
        batch.drop_column("recipient")
    with op.batch_alter_table("engage_party") as batch:
        batch.drop_column("opted_out_at")
    op.drop_table("engage_tracking_opt_out")
    op.drop_index("ix_engage_absence_address", table_name="engage_absence")
    op.drop_table("engage_absence")
