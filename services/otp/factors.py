"""Enrolled factors in SQL; TOTP secrets are stored encrypted with MultiFernet."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.fernet import InvalidToken, MultiFernet
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from .interfaces import Factor
from .models import FactorRow, RecoveryCodeRow, WebAuthnCredentialRow


class SecretUndecryptable(RuntimeError):
    """A stored secret was encrypted under a key no longer configured."""


class SqlFactorRepository:
    def __init__(self, engine: Engine, cipher: MultiFernet) -> None:
        self._engine = engine
        self._cipher = cipher

    def get(self, agent_id: int) -> Factor | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(FactorRow).where(FactorRow.agent_id == agent_id)
            ).first()
        if row is None:
            return None
        secret = None
        if row.secret_encrypted:
            try:
                secret = self._cipher.decrypt(row.secret_encrypted.encode()).decode()
            except InvalidToken as error:
                raise SecretUndecryptable(
                    f"the TOTP secret of agent {agent_id} cannot be decrypted with "
                    "any key in GATEHOUSE_OTP_KEYS; restore the old key or reset "
                    "the agent's 2FA"
                ) from error
        return Factor(
            agent_id=row.agent_id,
            method=row.method,
            email_security=row.email_security,
            secret=secret,
        )

    def replace(
        self,
        factor: Factor,
        recovery_code_rows: list[dict],
        webauthn_credential: dict | None = None,
    ) -> None:
        encrypted = None
        if factor.secret is not None:
            # The first key encrypts, so a key rotation reaches each factor at
            # its next enrollment while older keys still decrypt.
            encrypted = self._cipher.encrypt(factor.secret.encode()).decode()
        row = {
            "agent_id": factor.agent_id,
            "method": factor.method,
            "email_security": factor.email_security,
            "secret_encrypted": encrypted,
            "created_at": datetime.now(UTC),
        }
        codes = [{"agent_id": factor.agent_id, **row} for row in recovery_code_rows]
        # Two replicas confirming at the same moment may race on the primary key;
        # the loser retries once and its factor wins, as the later confirmation.
        for attempt in (1, 2):
            try:
                with self._engine.begin() as connection:
                    self._delete_rows(connection, factor.agent_id)
                    connection.execute(insert(FactorRow), [row])
                    if codes:
                        connection.execute(insert(RecoveryCodeRow), codes)
                    if webauthn_credential is not None:
                        connection.execute(
                            insert(WebAuthnCredentialRow), [webauthn_credential]
                        )
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    @staticmethod
    def _delete_rows(connection, agent_id: int) -> int:
        # Security keys belong to the webauthn factor, so any new factor or a
        # reset removes them with it.
        connection.execute(
            delete(WebAuthnCredentialRow).where(
                WebAuthnCredentialRow.agent_id == agent_id
            )
        )
        connection.execute(
            delete(RecoveryCodeRow).where(RecoveryCodeRow.agent_id == agent_id)
        )
        result = connection.execute(
            delete(FactorRow).where(FactorRow.agent_id == agent_id)
        )
        return result.rowcount

    def delete(self, agent_id: int) -> bool:
        with self._engine.begin() as connection:
            return self._delete_rows(connection, agent_id) > 0
