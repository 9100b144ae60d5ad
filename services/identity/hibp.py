"""Have I Been Pwned range check (k-anonymity): only 5 hex digits of SHA-1 leave."""

from __future__ import annotations

import hashlib
import logging

import requests

log = logging.getLogger(__name__)


class PwnedPasswordsClient:
    """Look a password up in the Pwned Passwords range API.

    The request carries only the first five hex digits of the password's SHA-1;
    the API returns every suffix under that prefix and the match happens here.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._timeout = timeout

    def is_pwned(self, password: str) -> bool:
        """Return True when the password is in the corpus; False also when the
        service fails, because a breach-list outage must not stop password
        changes (fail open, logged)."""
        digest = hashlib.sha1(password.encode(), usedforsecurity=False)
        hex_digest = digest.hexdigest().upper()
        prefix, suffix = hex_digest[:5], hex_digest[5:]
        try:
            response = requests.get(
                self._base_url + prefix,
                timeout=self._timeout,
                headers={"Add-Padding": "true", "User-Agent": "gatehouse-identity"},
            )
            response.raise_for_status()
        except requests.RequestException as error:
            # The error's text contains the request URL, and with it the first
            # five hex digits of the password's SHA-1: log only its type.
            status = getattr(error.response, "status_code", None)
            log.warning(
                "identity.hibp_unavailable",
                extra={"error": type(error).__name__, "status": status},
            )
            return False

        for line in response.text.splitlines():
            candidate, _, count = line.strip().partition(":")
            # Padding entries have a count of 0 and are not real matches.
            if candidate.upper() == suffix and count.strip() not in ("", "0"):
                return True
        return False
