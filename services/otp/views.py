"""The internal JSON API of the OTP service (see docs/architecture.md, "otp")."""

from __future__ import annotations

import logging
from importlib import resources

import redis
import sqlalchemy.exc
from flask import Blueprint, Response, current_app, jsonify, request
from gatehouse.common.ratelimit import Throttled
from gatehouse.common.web import error_response

from .interfaces import (
    ChallengeExpired,
    CredentialNotFound,
    DuplicateCredential,
    InvalidToken,
    LastCredential,
    MailUnavailable,
    NoFactor,
    OtpError,
    ResendTooSoon,
    TokenExpired,
    TooManyAttempts,
    TooManyCredentials,
)
from .service import OtpService, encryption_method

log = logging.getLogger(__name__)

blueprint = Blueprint("otp", __name__)

MAX_AGENT_ID = 2**31 - 1
STATUS_BY_ERROR = {
    InvalidToken: 400,
    TokenExpired: 400,
    TooManyAttempts: 400,
    NoFactor: 409,
    ResendTooSoon: 429,
    MailUnavailable: 503,
    ChallengeExpired: 400,
    CredentialNotFound: 404,
    LastCredential: 409,
    TooManyCredentials: 409,
    DuplicateCredential: 409,
}
# A browser description such as "Firefox on Linux", not a raw User-Agent header.
MAX_BROWSER_LENGTH = 60
NEWEST_CODE_NOTE = "Only the code in the newest mail works."


class InvalidRequest(Exception):
    """A request field is missing or malformed; the message names it."""


def service() -> OtpService:
    return current_app.extensions["otp"]


# Input ------------------------------------------------------------------------------


def _body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError as error:
        # silent=True covers ValueError only, and JSON nested deeper than the
        # recursion limit raises RecursionError.
        raise InvalidRequest("the request body is nested too deeply") from error
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def _code_submission() -> tuple[int, str, str]:
    """Read ``agent_id``, ``token`` and ``client_ip`` from a code-checking request."""
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    token = _text(data, "token", 64)
    client_ip = _text(data, "client_ip", 64, required=False, allow_empty=True)
    return agent_id, token, client_ip


def _check_agent_id(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest("agent_id must be a positive integer")
    if not 1 <= value <= MAX_AGENT_ID:
        raise InvalidRequest(f"agent_id must be between 1 and {MAX_AGENT_ID}")
    return value


def _text(
    data: dict,
    name: str,
    max_length: int,
    required: bool = True,
    allow_empty: bool = False,
) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} is missing or not a string")
    if not value and not allow_empty:
        raise InvalidRequest(f"{name} must not be empty")
    if len(value) > max_length:
        raise InvalidRequest(f"{name} is longer than {max_length} characters")
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise InvalidRequest(f"{name} contains control characters")
    if any(0xD800 <= ord(character) <= 0xDFFF for character in value):
        # JSON may escape a lone surrogate ("\ud800"), which no database, Redis key
        # or log line can encode as UTF-8.
        raise InvalidRequest(f"{name} contains a lone surrogate, which is not text")
    return value


def _email(value: str, name: str = "email") -> str:
    if "@" not in value or any(character.isspace() for character in value):
        raise InvalidRequest(f"{name} is not an email address")
    return value


def _flag(data: dict, name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false")
    return value


# Errors -----------------------------------------------------------------------------


@blueprint.app_errorhandler(InvalidRequest)
def _invalid_request(error: InvalidRequest):
    return error_response(400, "invalid_request", str(error))


@blueprint.app_errorhandler(OtpError)
def _otp_error(error: OtpError):
    status = STATUS_BY_ERROR.get(type(error), 400)
    if isinstance(error, ResendTooSoon):
        response, status = error_response(
            status,
            error.code,
            error.message,
            retry_after=error.retry_after,
            hourly_cap=error.hourly_cap,
        )
        response.headers["Retry-After"] = str(error.retry_after)
        return response, status
    return error_response(status, error.code, error.message)


@blueprint.app_errorhandler(Throttled)
def _throttled(error: Throttled):
    response, status = error_response(
        429,
        "throttled",
        f"Too many failed attempts. Try again in {error.retry_after} seconds.",
        retry_after=error.retry_after,
    )
    response.headers["Retry-After"] = str(error.retry_after)
    return response, status


@blueprint.app_errorhandler(redis.RedisError)
@blueprint.app_errorhandler(sqlalchemy.exc.OperationalError)
def _backend_unavailable(error: Exception):
    log.error("otp.backend_unavailable", extra={"error": type(error).__name__})
    return error_response(
        503, "unavailable", "A backing server is unreachable; try again shortly."
    )


# Factors ----------------------------------------------------------------------------


@blueprint.get("/v1/factors/<int:agent_id>")
def get_factor(agent_id: int):
    return jsonify(service().factor_status(_check_agent_id(agent_id)))


@blueprint.delete("/v1/factors/<int:agent_id>")
def delete_factor(agent_id: int):
    service().delete_factor(_check_agent_id(agent_id))
    return "", 204


@blueprint.post("/v1/factors/<int:agent_id>/recovery-codes")
def renew_recovery_codes(agent_id: int):
    codes = service().renew_recovery_codes(_check_agent_id(agent_id))
    return jsonify(recovery_codes=codes)


# Enrollment -------------------------------------------------------------------------


@blueprint.post("/v1/enrollments/email")
def start_email_enrollment():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    email = _email(_text(data, "email", 254))
    first_name = _text(data, "first_name", 200, allow_empty=True)
    email_security = _flag(data, "email_security")

    otp = service()
    otp.check_throttle(agent_id, "")
    otp.start_email_enrollment(agent_id, email, first_name, email_security)
    encryption = _encryption_or_none(email) if email_security else None
    return jsonify(
        ttl_seconds=otp.config.token_ttl,
        digits=otp.config.token_digits,
        encryption=encryption,
        message=NEWEST_CODE_NOTE,
    ), 202


@blueprint.post("/v1/enrollments/email/confirm")
def confirm_email_enrollment():
    agent_id, token, client_ip = _code_submission()

    codes = service().confirm_email_enrollment(agent_id, token, client_ip)
    return jsonify(method="email", recovery_codes=codes)


@blueprint.post("/v1/enrollments/app")
def start_app_enrollment():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    account_name = _text(data, "account_name", 200)
    return jsonify(service().start_app_enrollment(agent_id, account_name))


@blueprint.post("/v1/enrollments/app/confirm")
def confirm_app_enrollment():
    agent_id, token, client_ip = _code_submission()

    codes = service().confirm_app_enrollment(agent_id, token, client_ip)
    return jsonify(method="app", recovery_codes=codes)


# Login ------------------------------------------------------------------------------


@blueprint.post("/v1/challenges")
def create_challenge():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    email = _email(_text(data, "email", 254))
    first_name = _text(data, "first_name", 200, allow_empty=True)
    _text(data, "client_ip", 64, required=False, allow_empty=True)

    otp = service()
    method = otp.challenge(agent_id, email, first_name)
    if method == "email":
        return jsonify(
            method="email",
            ttl_seconds=otp.config.token_ttl,
            digits=otp.config.token_digits,
            message=NEWEST_CODE_NOTE,
        ), 202
    return jsonify(method=method)


@blueprint.post("/v1/verifications")
def verify():
    agent_id, token, client_ip = _code_submission()

    result = service().verify(agent_id, token, client_ip)
    answer = {"method": result.method, "recovery_code_used": result.recovery_code_used}
    if result.recovery_code_used:
        answer["recovery_codes_left"] = result.recovery_codes_left
    return jsonify(answer)


# Remembered devices -----------------------------------------------------------------


@blueprint.post("/v1/devices")
def remember_device():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    browser = _text(
        data, "browser", MAX_BROWSER_LENGTH, required=False, allow_empty=True
    )
    devices = service().stores.devices
    return jsonify(
        device_token=devices.remember(agent_id, browser), max_age=devices.ttl_seconds
    ), 201


@blueprint.get("/v1/devices/<int:agent_id>")
def list_devices(agent_id: int):
    return jsonify(
        devices=service().stores.devices.list_devices(_check_agent_id(agent_id))
    )


@blueprint.delete("/v1/devices/<int:agent_id>/<handle>")
def revoke_device(agent_id: int, handle: str):
    agent_id = _check_agent_id(agent_id)
    if len(handle) > 64 or not service().stores.devices.revoke(agent_id, handle):
        return error_response(404, "not_found", "No remembered device has this handle.")
    log.info("otp.device_revoked", extra={"agent_id": agent_id})
    return "", 204


@blueprint.post("/v1/devices/check")
def check_device():
    data = _body()
    agent_id = _check_agent_id(data.get("agent_id"))
    device_token = _text(data, "device_token", 1024)
    return jsonify(trusted=service().stores.devices.is_trusted(agent_id, device_token))


@blueprint.delete("/v1/devices/<int:agent_id>")
def revoke_devices(agent_id: int):
    service().stores.devices.revoke_all(_check_agent_id(agent_id))
    log.info("otp.devices_revoked", extra={"agent_id": agent_id})
    return "", 204


# Other ------------------------------------------------------------------------------


def _encryption_or_none(address: str) -> str | None:
    try:
        return encryption_method(address)
    except Exception as error:  # noqa: BLE001 - the preview is informative only
        log.warning(
            "otp.encryption_preview_failed", extra={"error": type(error).__name__}
        )
        return None


@blueprint.get("/v1/encryption/<path:address>")
def get_encryption(address: str):
    if len(address) > 254:
        raise InvalidRequest("address is longer than 254 characters")
    _email(_text({"address": address}, "address", 254))
    return jsonify(method=_encryption_or_none(address))


@blueprint.get("/openapi.yaml")
def openapi():
    text = resources.files("gatehouse.otp").joinpath("openapi.yaml").read_text()
    return Response(text, mimetype="application/yaml")
