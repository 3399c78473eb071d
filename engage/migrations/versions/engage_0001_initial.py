"""engage's tables, as the first revision of engage's branch.

Revision ID: engage_0001
Revises:
Create Date: 2026-11-30

Every table of engage.models at the time of the branch's start; later changes are revisions of
their own. Times are plain DateTime columns (engage stores naive UTC and attaches the zone on
reading), engage's enums plain strings, and the two indexes read newest first are made with
their DESC order on every database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Revision identifiers, used by Alembic.
revision = "engage_0001"
down_revision = None
branch_labels = ("engage",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engage_attachment_chunk",
        sa.Column("store_key", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("store_key", "seq", name=op.f("pk_engage_attachment_chunk")),
    )
    op.create_table(
        "engage_record_timezone",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(length=50), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("looked_up_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_record_timezone")),
        sa.UniqueConstraint("record_type", "record_id", name="uq_engage_record_timezone_record"),
    )
    op.create_table(
        "engage_setting",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_engage_setting")),
    )
    op.create_table(
        "engage_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("followed_sent", sa.Integer(), nullable=False),
        sa.Column("opened", sa.Integer(), nullable=False),
        sa.Column("replied", sa.Integer(), nullable=False),
        sa.Column("opportunities", sa.Integer(), nullable=False),
        sa.Column("won", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_template")),
    )
    op.create_index(
        op.f("ix_engage_template_language"), "engage_template", ["language"], unique=False
    )

    op.create_table(
        "engage_unparseable_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_unparseable_message")),
        sa.UniqueConstraint("sha256", name=op.f("uq_engage_unparseable_message_sha256")),
    )
    op.create_table(
        "engage_email",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("regarding_type", sa.String(length=50), nullable=True),
        sa.Column("regarding_id", sa.String(length=100), nullable=True),
        sa.Column("owner_id", sa.String(length=100), nullable=False),
        sa.Column("owner_team", sa.String(length=100), nullable=True),
        sa.Column("submission_key", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("followed", sa.Boolean(), nullable=False),
        sa.Column("bulk", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["engage_template.id"],
            name=op.f("fk_engage_email_template_id_engage_template"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_email")),
        sa.UniqueConstraint("message_id", name=op.f("uq_engage_email_message_id")),
        sa.UniqueConstraint("submission_key", name=op.f("uq_engage_email_submission_key")),
    )
    op.create_index(
        op.f("ix_engage_email_next_attempt_at"), "engage_email", ["next_attempt_at"], unique=False
    )
    op.create_index(op.f("ix_engage_email_owner_id"), "engage_email", ["owner_id"], unique=False)
    op.create_index(
        op.f("ix_engage_email_owner_team"), "engage_email", ["owner_team"], unique=False
    )
    op.create_index(op.f("ix_engage_email_status"), "engage_email", ["status"], unique=False)
    op.create_index(
        op.f("ix_engage_email_template_id"), "engage_email", ["template_id"], unique=False
    )

    op.create_table(
        "engage_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("followed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_attachment_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_attachment")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_engage_attachment_storage_key")),
    )
    op.create_index(
        op.f("ix_engage_attachment_email_id"), "engage_attachment", ["email_id"], unique=False
    )

    op.create_table(
        "engage_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_link_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_link")),
        sa.UniqueConstraint("email_id", "position", name="uq_engage_link_position"),
    )
    op.create_index(op.f("ix_engage_link_email_id"), "engage_link", ["email_id"], unique=False)

    op.create_table(
        "engage_party",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("record_type", sa.String(length=50), nullable=True),
        sa.Column("record_id", sa.String(length=100), nullable=True),
        sa.Column("delivery_state", sa.String(length=20), nullable=False),
        sa.Column("delivery_error", sa.Text(), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("attempt_id", sa.String(length=32), nullable=True),
        sa.Column("attempted_at", sa.DateTime(), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=True),
        sa.Column("follow_refused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("attachment_opens", sa.Integer(), nullable=False),
        sa.Column("first_open_at", sa.DateTime(), nullable=True),
        sa.Column("last_open_at", sa.DateTime(), nullable=True),
        sa.Column("replied_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_party_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_party")),
        sa.UniqueConstraint("token", name=op.f("uq_engage_party_token")),
    )
    op.create_index(op.f("ix_engage_party_email_id"), "engage_party", ["email_id"], unique=False)
    op.create_index(
        "ix_engage_party_record", "engage_party", ["record_type", "record_id"], unique=False
    )

    op.create_table(
        "engage_reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("condition", sa.String(length=20), nullable=False),
        sa.Column("remind_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("resolved_reason", sa.String(length=300), nullable=True),
        sa.Column("met_at", sa.DateTime(), nullable=True),
        sa.Column("fired_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_reminder_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_reminder")),
        sa.UniqueConstraint("email_id", name=op.f("uq_engage_reminder_email_id")),
    )
    op.create_index(op.f("ix_engage_reminder_state"), "engage_reminder", ["state"], unique=False)

    op.create_table(
        "engage_template_use",
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("followed", sa.Boolean(), nullable=False),
        sa.Column("opened", sa.Boolean(), nullable=False),
        sa.Column("replied", sa.Boolean(), nullable=False),
        sa.Column("opportunity_type", sa.String(length=50), nullable=True),
        sa.Column("opportunity_id", sa.String(length=100), nullable=True),
        sa.Column("won", sa.Boolean(), nullable=False),
        sa.Column("won_checked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_template_use_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["engage_template.id"],
            name=op.f("fk_engage_template_use_template_id_engage_template"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("email_id", name=op.f("pk_engage_template_use")),
    )
    op.create_index(
        "ix_engage_template_use_opportunity",
        "engage_template_use",
        ["opportunity_type", "opportunity_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_engage_template_use_template_id"),
        "engage_template_use",
        ["template_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_engage_template_use_won_checked_at"),
        "engage_template_use",
        ["won_checked_at"],
        unique=False,
    )

    op.create_table(
        "engage_card",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=100), nullable=False),
        sa.Column("owner_team", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=True),
        sa.Column("record_type", sa.String(length=50), nullable=True),
        sa.Column("record_id", sa.String(length=100), nullable=True),
        sa.Column("party_id", sa.Integer(), nullable=True),
        sa.Column("reminder_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("snoozed_until", sa.DateTime(), nullable=True),
        sa.Column("dismissed_at", sa.DateTime(), nullable=True),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_card_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["party_id"],
            ["engage_party.id"],
            name=op.f("fk_engage_card_party_id_engage_party"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reminder_id"],
            ["engage_reminder.id"],
            name=op.f("fk_engage_card_reminder_id_engage_reminder"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_card")),
    )
    op.create_index(
        "ix_engage_card_email", "engage_card", ["email_id", "kind", "created_at"], unique=False
    )
    op.create_index(
        "ix_engage_card_panel",
        "engage_card",
        ["owner_id", "dismissed_at", "snoozed_until", "priority", sa.text("created_at DESC")],
        unique=False,
    )
    op.create_index(
        op.f("ix_engage_card_reminder_id"), "engage_card", ["reminder_id"], unique=False
    )
    op.create_index(
        "ix_engage_card_team", "engage_card", ["owner_team", "dismissed_at"], unique=False
    )

    op.create_table(
        "engage_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=True),
        sa.Column("attachment_id", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("user_agent", sa.String(length=400), nullable=False),
        sa.Column("ip_hash", sa.String(length=32), nullable=True),
        sa.Column("dedupe_key", sa.String(length=300), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["engage_attachment.id"],
            name=op.f("fk_engage_event_attachment_id_engage_attachment"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_event_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["engage_link.id"],
            name=op.f("fk_engage_event_link_id_engage_link"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["party_id"],
            ["engage_party.id"],
            name=op.f("fk_engage_event_party_id_engage_party"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_event")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_engage_event_dedupe_key")),
    )
    op.create_index(
        "ix_engage_event_history",
        "engage_event",
        ["email_id", "party_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_engage_event_occurred_at"), "engage_event", ["occurred_at"], unique=False
    )
    op.create_index(op.f("ix_engage_event_party_id"), "engage_event", ["party_id"], unique=False)

    op.create_table(
        "engage_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(length=50), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("owner_id", sa.String(length=100), nullable=False),
        sa.Column("owner_team", sa.String(length=100), nullable=True),
        sa.Column("email_id", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["engage_email.id"],
            name=op.f("fk_engage_activity_email_id_engage_email"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["engage_event.id"],
            name=op.f("fk_engage_activity_event_id_engage_event"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engage_activity")),
        sa.UniqueConstraint(
            "record_type", "record_id", "email_id", name="uq_engage_activity_email"
        ),
    )
    op.create_index(
        op.f("ix_engage_activity_email_id"), "engage_activity", ["email_id"], unique=False
    )
    op.create_index(
        op.f("ix_engage_activity_event_id"), "engage_activity", ["event_id"], unique=False
    )
    op.create_index(
        "ix_engage_activity_timeline",
        "engage_activity",
        ["record_type", "record_id", sa.text("occurred_at DESC"), sa.text("id DESC")],
        unique=False,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; children before their parents.
    op.drop_table("engage_activity")
    op.drop_table("engage_event")
    op.drop_table("engage_card")
    op.drop_table("engage_template_use")
    op.drop_table("engage_reminder")
    op.drop_table("engage_party")
    op.drop_table("engage_link")
    op.drop_table("engage_attachment")
    op.drop_table("engage_email")
    op.drop_table("engage_unparseable_message")
    op.drop_table("engage_template")
    op.drop_table("engage_setting")
    op.drop_table("engage_record_timezone")
    op.drop_table("engage_attachment_chunk")
