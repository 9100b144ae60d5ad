"""Recovery codes: single-use fallbacks, stored only as salted, keyed hashes.

A code is twelve base32 characters shown as ``xxxx-xxxx-xxxx``, 60 random bits. It
always contains a letter, so it can never be mistaken for a numeric token.

60 bits are fewer than the 112 that ASVS 4.0.3 item 2.6.2 accepts unsalted, so each
code gets its own 128-bit random salt, and the stored value is HMAC-SHA256 under a
key derived from ``GATEHOUSE_SECRET_KEY`` over agent id, salt and code. Each row
names its key by a key id, and the keys derived from
``GATEHOUSE_SECRET_KEY_FALLBACKS`` still verify, so rotating the secret keeps the
codes working. Rows written before salts (salt and key id NULL) hash agent id and
code only; they verify under every configured key until used or renewed.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, insert, select, update

from .interfaces import InvalidToken, NoFactor
from .keys import derive_key, keyed_hash
from .models import FactorRow, RecoveryCodeRow

log = logging.getLogger(__name__)

CODE_COUNT = 10
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
CODE_LENGTH = 12
GROUP = 4
SALT_BYTES = 16
KEY_LABEL = "gatehouse.otp.recovery-code"

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


@dataclass(frozen=True)
class RecoveryKey:
    """An HMAC key for recovery codes and its public id (16 hex digits)."""

    key_id: str
    key: bytes = field(repr=False)


def recovery_keys(secret_key: str, fallbacks: list[str]) -> list[RecoveryKey]:
    """Return the keys derived from the current secret and its fallbacks, current
    first. The id is an HMAC of the key, so it reveals nothing about the key."""
    keys = []
    for secret in [secret_key, *fallbacks]:
        key = derive_key(secret, KEY_LABEL)
        key_id = keyed_hash(key, f"{KEY_LABEL}.key-id")[:16]
        keys.append(RecoveryKey(key_id, key))
    return keys


def _salted_hash(key: bytes, agent_id: int, salt: str, normalized: str) -> str:
    return keyed_hash(key, f"{agent_id}:{salt}:{normalized}")


def _legacy_hash(key: bytes, agent_id: int, normalized: str) -> str:
    return keyed_hash(key, f"{agent_id}:{normalized}")


class SqlRecoveryCodeStore:
    def __init__(self, engine: Engine, keys: list[RecoveryKey]) -> None:
        if not keys:
            raise ValueError("keys is empty; pass at least one RecoveryKey")
        self._engine = engine
        self._keys = keys
        self._keys_by_id = {key.key_id: key for key in keys}

    def new_set(self, agent_id: int) -> tuple[list[str], list[dict]]:
        """Return ``CODE_COUNT`` fresh codes and their rows (``code_hash``,
        ``salt``, ``key_id``) under the current key."""
        current = self._keys[0]
        codes = [generate_code() for _ in range(CODE_COUNT)]
        rows = []
        for code in codes:
            salt = secrets.token_hex(SALT_BYTES)
            normalized = normalize_recovery_code(code)
            rows.append(
                {
                    "code_hash": _salted_hash(current.key, agent_id, salt, normalized),
                    "salt": salt,
                    "key_id": current.key_id,
                }
            )
        return codes, rows

    def _count_unused(self, connection, agent_id: int) -> int:
        query = (
            select(func.count())
            .select_from(RecoveryCodeRow)
            .where(
                RecoveryCodeRow.agent_id == agent_id, RecoveryCodeRow.used_at.is_(None)
            )
        )
        return connection.execute(query).scalar_one()

    def _matches(self, row, agent_id: int, normalized: str) -> bool:
        """Compare ``normalized`` with one stored row, in constant time per key."""
        if row.salt is None:
            candidates = [_legacy_hash(k.key, agent_id, normalized) for k in self._keys]
        else:
            key = self._keys_by_id.get(row.key_id)
            if key is None:
                return False
            candidates = [_salted_hash(key.key, agent_id, row.salt, normalized)]
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(candidate, row.code_hash)
        return matched

    def _find(self, rows, agent_id: int, normalized: str):
        # Every unused row is checked, not only up to the first match, so the
        # time taken does not depend on which code was entered.
        found = None
        for row in rows:
            if self._matches(row, agent_id, normalized) and found is None:
                found = row
        return found

    def _log_unknown_keys(self, rows, agent_id: int) -> None:
        unknown = sorted(
            {row.key_id for row in rows if row.salt is not None} - set(self._keys_by_id)
        )
        if unknown:
            log.warning(
                "otp.recovery_code_key_unknown",
                extra={"agent_id": agent_id, "key_ids": unknown},
            )

    def consume(self, agent_id: int, code: str) -> int:
        normalized = normalize_recovery_code(code)
        if normalized is None:
            raise InvalidToken()
        unused = select(
            RecoveryCodeRow.id,
            RecoveryCodeRow.code_hash,
            RecoveryCodeRow.salt,
            RecoveryCodeRow.key_id,
        ).where(RecoveryCodeRow.agent_id == agent_id, RecoveryCodeRow.used_at.is_(None))
        with self._engine.begin() as connection:
            rows = connection.execute(unused).all()
            found = self._find(rows, agent_id, normalized)
            if found is None:
                self._log_unknown_keys(rows, agent_id)
                raise InvalidToken()
            # The conditional UPDATE marks the code used, so two replicas
            # submitting the same code at once cannot both succeed.
            statement = (
                update(RecoveryCodeRow)
                .where(
                    RecoveryCodeRow.id == found.id, RecoveryCodeRow.used_at.is_(None)
                )
                .values(used_at=datetime.now(UTC))
            )
            if connection.execute(statement).rowcount != 1:
                raise InvalidToken()
            if found.key_id != self._keys[0].key_id:
                # NOTE: a used code is spent, so nothing is rehashed. The agent's
                # other codes keep the old key until the agent renews them.
                log.info(
                    "otp.recovery_code_old_key",
                    extra={"agent_id": agent_id, "key_id": found.key_id or "legacy"},
                )
            return self._count_unused(connection, agent_id)

    def remaining(self, agent_id: int) -> int:
        with self._engine.connect() as connection:
            return self._count_unused(connection, agent_id)

    def renew(self, agent_id: int) -> list[str]:
        codes, rows = self.new_set(agent_id)
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
                [{"agent_id": agent_id, **row} for row in rows],
            )
        return codes
