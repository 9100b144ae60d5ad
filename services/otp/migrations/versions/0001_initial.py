"""Create the factor and recovery code tables.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "otp_factors",
        sa.Column("agent_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("email_security", sa.Boolean(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "otp_recovery_codes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "agent_id",
            sa.Integer(),
            sa.ForeignKey("otp_factors.agent_id"),
            nullable=False,
        ),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("agent_id", "code_hash"),
    )
    op.create_index(
        "ix_otp_recovery_codes_agent_id", "otp_recovery_codes", ["agent_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_otp_recovery_codes_agent_id", "otp_recovery_codes")
    op.drop_table("otp_recovery_codes")
    op.drop_table("otp_factors")
