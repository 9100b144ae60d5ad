"""Password hashing (argon2id) and the password policy (NIST SP 800-63B)."""

from __future__ import annotations

import functools
import re
import secrets
import string
import unicodedata
from collections.abc import Iterable

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .config import MAX_PASSWORD_LENGTH, IdentityConfig
from .hibp import PwnedPasswordsClient
from .interfaces import InvalidPassword


def normalize_password(password: str) -> str:
    """Return the NFC form, so composed and decomposed input hash alike.

    Nothing is trimmed: leading and trailing spaces are part of the password.
    """
    return unicodedata.normalize("NFC", password)


_WHITESPACE_RUN = re.compile(r"\s{2,}")
# NIST SP 800-63B names repetitive and sequential strings among the passwords to
# reject. Fewer distinct characters than this mark a repetition.
MIN_DISTINCT_CHARACTERS = 5


def is_repetitive(password: str) -> bool:
    """Tell whether a password repeats a few characters or is one sequence
    ("abcdefghijkl", "987654321098"), ignoring case and spaces."""
    folded = password.lower().replace(" ", "")
    if len(set(folded)) < MIN_DISTINCT_CHARACTERS:
        return True
    steps = {ord(b) - ord(a) for a, b in zip(folded, folded[1:], strict=False)}
    # Digit runs that wrap around ("...7890123") step by 1 and by -9.
    return steps <= {1, -9} or steps <= {-1, 9}


class Argon2Hasher:
    """argon2id hashes with configurable cost; older parameters get rehashed."""

    def __init__(self, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verifying against this hash when the login is unknown costs the same
        # as a real verification, so response times do not reveal agents.
        self.dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))

    @classmethod
    def from_config(cls, config: IdentityConfig) -> Argon2Hasher:
        return cls(
            config.argon2_memory_kib, config.argon2_time_cost, config.argon2_parallelism
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


@functools.cache
def common_passwords() -> frozenset[str]:
    """Return zxcvbn's list of frequently used passwords (30,000 in 4.5.0)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


# zxcvbn estimates the guesses an attacker with lists of common passwords, words,
# names, dates, keyboard patterns and l33t substitutions needs. Below 10^8 a
# password falls to an online or breached-list attack. With zxcvbn 4.5.0,
# "Password123!" measured about 10^4.6 guesses and "Sunshine2019!" about 10^7.3.
MIN_GUESSES = 10**8
# zxcvbn 4.5.0 rejects longer input (its matching grows faster than linearly
# with length). A prefix that is hard to guess makes the whole password hard.
GUESSABILITY_PREFIX = 72


def is_guessable(password: str) -> bool:
    """Return True when zxcvbn estimates fewer than MIN_GUESSES for the password."""
    from zxcvbn import zxcvbn

    return zxcvbn(password[:GUESSABILITY_PREFIX])["guesses"] < MIN_GUESSES


_FILLER = re.compile(rf"[\s\d{re.escape(string.punctuation)}]+")


def is_built_from(password: str, words: Iterable[str]) -> bool:
    """Return True when the password is nothing but the given words, digits,
    punctuation and spaces, compared case-insensitively ("Alice.Smith2024!")."""
    remainder = password.lower()
    for word in sorted(
        {w.lower() for w in words if len(w) >= 3}, key=len, reverse=True
    ):
        remainder = remainder.replace(word, " ")
    if remainder == password.lower():
        return False
    return _FILLER.sub("", remainder) == ""


def context_words(login: str, email: str, first_name: str, last_name: str) -> list[str]:
    local_part = email.rsplit("@", 1)[0]
    return [login, email, local_part, first_name, last_name]


class PasswordPolicy:
    """Checks a new password against the NIST SP 800-63B rules.

    There are no composition rules and no expiry. A password is rejected when its
    length is out of range, it is on the common-password list or zxcvbn rates it
    easy to guess. It is also
    rejected when it is built only from the agent's login, name or email, reused
    from recent history, or (when enabled) found in the Have I Been Pwned corpus.
    """

    def __init__(
        self,
        config: IdentityConfig,
        hasher: Argon2Hasher,
        pwned: PwnedPasswordsClient | None = None,
    ) -> None:
        self.min_length = config.password_min_length
        self.max_length = MAX_PASSWORD_LENGTH
        self._hasher = hasher
        self._pwned = pwned

    def check(
        self, password: str, words: Iterable[str], previous_hashes: Iterable[str] = ()
    ) -> str:
        """Return the normalized password; raise InvalidPassword with a message
        for the person."""
        if not isinstance(password, str):
            raise InvalidPassword("The password must be text.")
        password = normalize_password(password)
        # Runs of spaces count as one character toward the minimum (NIST SP
        # 800-63B allows this), so twelve characters cannot be "x" and 11 spaces.
        # The password itself keeps every space.
        length = len(_WHITESPACE_RUN.sub(" ", password))
        if length < self.min_length:
            raise InvalidPassword(
                f"The password is too short: use at least {self.min_length} "
                f"characters (this one has {length})."
            )
        if len(password) > self.max_length:
            raise InvalidPassword(
                f"The password is too long: use at most {self.max_length} characters."
            )
        if any(unicodedata.category(char) == "Cc" for char in password):
            raise InvalidPassword("The password must not contain control characters.")
        if is_repetitive(password):
            raise InvalidPassword(
                "The password is too repetitive or follows a simple sequence "
                "(like aaaa or 1234). Choose another."
            )
        if password.lower() in common_passwords():
            raise InvalidPassword(
                "This password is on a list of commonly used passwords. Choose another."
            )
        if is_guessable(password):
            raise InvalidPassword(
                "This password is easy to guess because it is built from common "
                "words, names, dates or keyboard patterns. A phrase of four or more "
                "unrelated words works well."
            )
        if is_built_from(password, words):
            raise InvalidPassword(
                "The password must not be built from your login, name or email "
                "address. Choose another."
            )
        for old_hash in previous_hashes:
            if self._hasher.verify(old_hash, password):
                raise InvalidPassword(
                    "You used this password recently. Choose one you have not used "
                    "before."
                )
        if self._pwned is not None and self._pwned.is_pwned(password):
            raise InvalidPassword(
                "This password appears in known data breaches. Choose another."
            )
        return password

    def is_breached(self, password: str) -> bool:
        """Return True when the normalized password is on the common-password list,
        easy to guess, or, when enabled, in Have I Been Pwned (which fails open)."""
        if password.lower() in common_passwords() or is_guessable(password):
            return True
        return self._pwned is not None and self._pwned.is_pwned(password)
