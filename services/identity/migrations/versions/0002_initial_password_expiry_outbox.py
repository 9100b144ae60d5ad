"""Add initial-password expiry, the must-change reason and the mail outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("password_change_reason", sa.String(16), nullable=True)
        )
        batch.add_column(
            sa.Column("initial_password_expires_at", sa.DateTime(), nullable=True)
        )
    # Agents that still have to change an initial password got it from an
    # operator before expiry existed; mark the reason, leave them without expiry.
    op.execute(
        "UPDATE agents SET password_change_reason = 'initial' "
        "WHERE must_change_password = true"
    )
    op.create_table(
        "mail_outbox",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("available_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(32), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_mail_outbox_available_at", "mail_outbox", ["available_at"])


def downgrade() -> None:
    op.drop_index("ix_mail_outbox_available_at", "mail_outbox")
    op.drop_table("mail_outbox")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("initial_password_expires_at")
        batch.drop_column("password_change_reason")
