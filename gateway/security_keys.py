"""Helpers of the security-key (WebAuthn) pages: relying party, options, input.

The RP ID and the origin come from ``PUBLIC_URL`` (GATEHOUSE_PUBLIC_URL), never
from the request's Host header. WebAuthn rejects an IP address as RP ID, so a
gateway whose public URL names an IP address offers no security keys.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from flask import current_app, request, session

from .flow import expect, otp, throttled_message
from .forms import SecurityKeyVerifyForm

DEFAULT_PORTS = {"http": 80, "https": 443}
UNAVAILABLE_MESSAGE = (
    "Security keys need the gateway to be served under a domain name. Ask your "
    "administrator to set GATEHOUSE_PUBLIC_URL to one."
)
UNREADABLE_MESSAGE = (
    "The security key response could not be read, so nothing was changed. Try again."
)


def relying_party() -> tuple[str, str] | None:
    """Return (RP ID, origin) from the public URL, or None if it names an IP
    address or no host."""
    parts = urlsplit(current_app.config["PUBLIC_URL"])
    host = (parts.hostname or "").lower()
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    origin = f"{parts.scheme}://{host}"
    # A browser leaves the scheme's default port out of the origin it reports.
    if parts.port and parts.port != DEFAULT_PORTS.get(parts.scheme):
        origin += f":{parts.port}"
    return host, origin


def readable_credential(text: str) -> bool:
    """Return True if ``text`` is a JSON object shaped like a PublicKeyCredential;
    the OTP service does the verification."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        # Arrays nested deeper than the recursion limit raise RecursionError.
        return False
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("response"), dict)
    )


def unavailable_reason() -> str | None:
    """Return why security keys cannot work for this request, or None if they can.

    A browser runs a ceremony only at the RP ID's host, so a page opened at
    another name for the gateway (127.0.0.1 for localhost) cannot use a key.
    """
    party = relying_party()
    if party is None:
        return UNAVAILABLE_MESSAGE
    rp_id, origin = party
    if (urlsplit("//" + request.host).hostname or "") != rp_id:
        return (
            f"Security keys work only at {origin}. Open {origin}/agent to use "
            "a security key."
        )
    return None


def start_ceremony(path: str, body: dict) -> tuple[dict | None, str | None]:
    """Ask the OTP service for options. Return ({"options", "ttl_seconds"}, None),
    or (None, a message for the agent) when no ceremony can start now."""
    reason = unavailable_reason()
    if reason is not None:
        return None, reason
    rp_id, origin = relying_party()
    response = otp().post(path, {**body, "rp_id": rp_id, "origin": origin})
    if response.status == 429:
        return None, throttled_message(int(response.body.get("retry_after", 60)))
    return expect(response, 200), None


def verify_page_context(method: str | None) -> dict:
    """Return the extra context of the 2fa-verify page for a security-key agent."""
    if method != "webauthn":
        return {}
    ceremony, unavailable = start_ceremony(
        "/v1/webauthn/authentications", {"agent_id": session["agent_id"]}
    )
    return {
        "key_form": SecurityKeyVerifyForm(formdata=None),
        "webauthn_options": json.dumps(ceremony["options"]) if ceremony else None,
        "webauthn_unavailable": unavailable,
    }


def list_keys(agent_id: int, method: str | None) -> list[dict]:
    if method != "webauthn":
        return []
    answer = expect(otp().get(f"/v1/webauthn/credentials/{agent_id}"), 200)
    return answer.get("credentials", [])
