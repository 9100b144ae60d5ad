"""The internal JSON API of the security-key (WebAuthn) factor.

The gateway names the RP ID and the origin when it starts a ceremony, from its
public URL. The OTP service keeps both with the challenge and verifies the response
against them, so the finishing request cannot change them.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from flask import Blueprint, jsonify

from .views import InvalidRequest, _body, _check_agent_id, _text, service

blueprint = Blueprint("otp_webauthn", __name__)

# A registration response with "none" attestation is well under 2 KB; other
# attestation formats carry certificates, which stay far below this limit.
MAX_CREDENTIAL_LENGTH = 32 * 1024
MAX_KEY_NAME_LENGTH = 64
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _rp_id(data: dict) -> str:
    """Return ``rp_id`` if it is a lower-case domain name. Browsers accept no IP
    address as RP ID."""
    rp_id = _text(data, "rp_id", 253)
    try:
        ipaddress.ip_address(rp_id.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidRequest("rp_id must be a domain name, not an IP address")
    if not all(_DOMAIN_LABEL.match(label) for label in rp_id.split(".")):
        raise InvalidRequest("rp_id must be a lower-case domain name")
    return rp_id


def _origin(data: dict, rp_id: str) -> str:
    """Return ``origin`` if its host is ``rp_id`` or a subdomain of it and its
    scheme is https (http only for localhost, which browsers treat as secure)."""
    origin = _text(data, "origin", 300)
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as error:
        raise InvalidRequest("origin is not a valid URL") from error
    host = parts.hostname or ""
    if parts.path or parts.query or parts.fragment or parts.username:
        raise InvalidRequest("origin must be scheme, host and port only")
    if port == 0:
        raise InvalidRequest("origin's port must be between 1 and 65535")
    if host != rp_id and not host.endswith("." + rp_id):
        raise InvalidRequest("origin's host must be rp_id or a subdomain of it")
    localhost = host == "localhost" or host.endswith(".localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and localhost):
        raise InvalidRequest("origin must use https (http only for localhost)")
    return origin


def _credential(data: dict) -> str:
    return _text(data, "credential", MAX_CREDENTIAL_LENGTH)


@blueprint.post("/v1/webauthn/registrations")
def start_registration():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    user_name = _text(data, "user_name", 200)
    display_name = _text(data, "display_name", 200, required=False, allow_empty=True)
    rp_id = _rp_id(data)
    origin = _origin(data, rp_id)

    answer = service().start_webauthn_registration(
        agent_id, user_name, display_name, rp_id, origin
    )
    return jsonify(answer)


@blueprint.post("/v1/webauthn/registrations/verify")
def finish_registration():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    credential = _credential(data)
    name = _text(data, "name", MAX_KEY_NAME_LENGTH).strip()
    if not name:
        raise InvalidRequest("name must not be blank")
    client_ip = _text(data, "client_ip", 64, required=False, allow_empty=True)

    answer = service().finish_webauthn_registration(
        agent_id, credential, name, client_ip
    )
    return jsonify(answer)


@blueprint.post("/v1/webauthn/authentications")
def start_authentication():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    rp_id = _rp_id(data)
    origin = _origin(data, rp_id)

    return jsonify(service().start_webauthn_authentication(agent_id, rp_id, origin))


@blueprint.post("/v1/webauthn/authentications/verify")
def finish_authentication():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    credential = _credential(data)
    client_ip = _text(data, "client_ip", 64, required=False, allow_empty=True)

    result = service().verify_webauthn(agent_id, credential, client_ip)
    return jsonify(method=result.method, recovery_code_used=False)


@blueprint.get("/v1/webauthn/credentials/<int:agent_id>")
def list_credentials(agent_id: int):
    keys = service().list_security_keys(_check_agent_id(agent_id))
    return jsonify(credentials=keys)


@blueprint.delete("/v1/webauthn/credentials/<int:agent_id>/<int:key_id>")
def remove_credential(agent_id: int, key_id: int):
    agent_id = _check_agent_id(agent_id)
    if not 1 <= key_id <= 2**31 - 1:
        raise InvalidRequest("the key id must be between 1 and 2147483647")
    service().remove_security_key(agent_id, key_id)
    return "", 204
