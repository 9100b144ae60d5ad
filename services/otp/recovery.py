"""Recovery codes: single-use fallbacks, stored only as keyed hashes.

A code is twelve base32 characters shown as ``xxxx-xxxx-xxxx``, 60 random bits. It
always contains a letter, so it can never be mistaken for a numeric token.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, insert, select, update

from .interfaces import InvalidToken, NoFactor
from .keys import keyed_hash
from .models import FactorRow, RecoveryCodeRow

CODE_COUNT = 10
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
CODE_LENGTH = 12
GROUP = 4

_SEPARATORS = str.maketrans("", "", " -")


def generate_code() -> str:
    while True:
        raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        if any(character.isalpha() for character in raw):
            break
    groups = [raw[start : start + GROUP] for start in range(0, CODE_LENGTH, GROUP)]
    return "-".join(groups)


def normalize_recovery_code(text: str) -> str | None:
    """Return the code in canonical form (lower case, no separators), or None
    if ``text`` is not shaped like a recovery code."""
    cleaned = text.translate(_SEPARATORS).lower()
    if len(cleaned) != CODE_LENGTH:
        return None
    if not all(character in ALPHABET for character in cleaned):
        return None
    if not any(character.isalpha() for character in cleaned):
        return None
    return cleaned


class SqlRecoveryCodeStore:
    def __init__(self, engine: Engine, hash_key: bytes) -> None:
        self._engine = engine
        self._hash_key = hash_key

    def hash_code(self, agent_id: int, code: str) -> str:
        normalized = normalize_recovery_code(code)
        if normalized is None:
            raise ValueError("not a recovery code")
        return keyed_hash(self._hash_key, f"{agent_id}:{normalized}")

    def new_set(self, agent_id: int) -> tuple[list[str], list[str]]:
        """Return ``CODE_COUNT`` fresh codes and their hashes."""
        codes = [generate_code() for _ in range(CODE_COUNT)]
        return codes, [self.hash_code(agent_id, code) for code in codes]

    def _count_unused(self, connection, agent_id: int) -> int:
        query = (
            select(func.count())
            .select_from(RecoveryCodeRow)
            .where(
                RecoveryCodeRow.agent_id == agent_id, RecoveryCodeRow.used_at.is_(None)
            )
        )
        return connection.execute(query).scalar_one()

    def consume(self, agent_id: int, code: str) -> int:
        code_hash = self.hash_code(agent_id, code)
        # One conditional UPDATE marks the code used, so two replicas submitting
        # the same code at once cannot both succeed.
        statement = (
            update(RecoveryCodeRow)
            .where(
                RecoveryCodeRow.agent_id == agent_id,
                RecoveryCodeRow.code_hash == code_hash,
                RecoveryCodeRow.used_at.is_(None),
            )
            .values(used_at=datetime.now(UTC))
        )
        with self._engine.begin() as connection:
            if connection.execute(statement).rowcount != 1:
                raise InvalidToken()
            return self._count_unused(connection, agent_id)

    def remaining(self, agent_id: int) -> int:
        with self._engine.connect() as connection:
            return self._count_unused(connection, agent_id)

    def renew(self, agent_id: int) -> list[str]:
        codes, hashes = self.new_set(agent_id)
        with self._engine.begin() as connection:
            exists = connection.execute(
                select(FactorRow.agent_id).where(FactorRow.agent_id == agent_id)
            ).first()
            if exists is None:
                raise NoFactor()
            connection.execute(
                delete(RecoveryCodeRow).where(RecoveryCodeRow.agent_id == agent_id)
            )
            connection.execute(
                insert(RecoveryCodeRow),
                [{"agent_id": agent_id, "code_hash": value} for value in hashes],
            )
        return codes
