"""Create the table of WebAuthn credentials (security keys and passkeys).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "otp_webauthn_credentials",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.String(1400), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("transports", sa.String(200), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint(
            "credential_id", name="uq_otp_webauthn_credentials_credential_id"
        ),
    )
    op.create_index(
        "ix_otp_webauthn_credentials_agent_id",
        "otp_webauthn_credentials",
        ["agent_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_otp_webauthn_credentials_agent_id", "otp_webauthn_credentials")
    op.drop_table("otp_webauthn_credentials")
