"""Add a per-code salt and the HMAC key id to recovery codes.

Existing rows keep NULL in both columns and are verified in the old format (HMAC
over agent id and code) until they are used or renewed.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("otp_recovery_codes") as batch:
        batch.add_column(sa.Column("salt", sa.String(32), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))


def downgrade() -> None:
    # Salted rows cannot be checked in the old format, so they are removed and
    # their agents need new recovery codes.
    op.execute("DELETE FROM otp_recovery_codes WHERE salt IS NOT NULL")
    with op.batch_alter_table("otp_recovery_codes") as batch:
        batch.drop_column("key_id")
        batch.drop_column("salt")
