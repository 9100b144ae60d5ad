"""Login device cookies: proof that a browser completed a sign-in for a login before.

After a complete sign-in the gateway gives the browser an entry bound to that login.
Identity counts failed passwords sent with a valid entry in a window of their own
per (login, device). An attacker who fills the login's window from elsewhere then
cannot lock the agent out of a browser they signed in with before. This is the
"device cookie" defence against online guessing from OWASP's authentication guidance.

One cookie keeps up to ``MAX_ENTRIES`` entries, one per login, because several
agents may share a helpdesk PC. An entry is ``DEVICE_ID.ISSUED.MAC`` in hex and
decimal: a random 128-bit device id, the issue time in Unix seconds, and the first
128 bits of HMAC-SHA256 over the normalized login, the device id and the time. The
login itself is not in the cookie, so a shared PC does not reveal who used it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass

# Five entries of 76 characters plus separators fit in 400 bytes. RFC 6265 section
# 6.1 asks browsers to store at least 4096 bytes per cookie.
MAX_ENTRIES = 5
MAX_COOKIE_LENGTH = 1024
DEFAULT_LIFETIME_DAYS = 180

_ENTRY = re.compile(r"^([0-9a-f]{32})\.([0-9]{1,12})\.([0-9a-f]{32})$")
_KEY_LABEL = b"gatehouse login device cookie v1"


@dataclass(frozen=True)
class DeviceEntry:
    """One login's entry: device id, issue time in Unix seconds, and MAC."""

    device_id: str
    issued: int
    mac: str

    def encode(self) -> str:
        return f"{self.device_id}.{self.issued}.{self.mac}"


def normalize_login(login: str) -> str:
    """Return the form identity compares logins in: NFC, then lowercased."""
    return unicodedata.normalize("NFC", login).lower()


class DeviceCookieCodec:
    """Issue and verify device cookie entries under a key derived from the secret.

    NOTE: only the current ``GATEHOUSE_SECRET_KEY`` is used, not the fallbacks, so
    rotating the key makes every browser untrusted until its next full sign-in.
    """

    def __init__(self, secret_key: str, lifetime_seconds: int) -> None:
        self._key = hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self.lifetime_seconds = lifetime_seconds

    def _mac(self, login: str, device_id: str, issued: int) -> str:
        message = f"{normalize_login(login)}\x00{device_id}\x00{issued}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def parse(self, cookie: str | None) -> list[DeviceEntry]:
        """Return the well-formed entries of ``cookie``; ignore everything else.

        A cookie longer than ``MAX_COOKIE_LENGTH`` yields no entries at all.
        """
        if not isinstance(cookie, str) or len(cookie) > MAX_COOKIE_LENGTH:
            return []
        entries = []
        for part in cookie.split("-")[:MAX_ENTRIES]:
            match = _ENTRY.match(part)
            if match:
                device_id, issued, mac = match.groups()
                entries.append(DeviceEntry(device_id, int(issued), mac))
        return entries

    def find(self, cookie: str | None, login: object) -> str | None:
        """Return the device id of the valid, unexpired entry for ``login``, if any."""
        if not isinstance(login, str):
            return None
        now = time.time()
        for entry in self.parse(cookie):
            expected = self._mac(login, entry.device_id, entry.issued)
            fresh = 0 <= now - entry.issued <= self.lifetime_seconds
            if hmac.compare_digest(expected, entry.mac) and fresh:
                return entry.device_id
        return None

    def issue(self, cookie: str | None, login: str) -> str:
        """Return a new cookie value with a fresh entry for ``login`` first.

        The entry keeps the login's earlier device id when the cookie has a valid
        one, so its failure window carries over. Other logins' entries stay,
        newest first, up to ``MAX_ENTRIES`` in all. Expired entries and the oldest
        ones beyond the limit are dropped.
        """
        device_id = self.find(cookie, login) or secrets.token_hex(16)
        issued = int(time.time())
        entry = DeviceEntry(device_id, issued, self._mac(login, device_id, issued))
        others = [
            other
            for other in self.parse(cookie)
            if other.device_id != device_id
            and 0 <= issued - other.issued <= self.lifetime_seconds
        ]
        others.sort(key=lambda other: other.issued, reverse=True)
        kept = [entry, *others[: MAX_ENTRIES - 1]]
        return "-".join(item.encode() for item in kept)
