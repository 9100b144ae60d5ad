"""The identity HTTP API: maps JSON requests and domain errors to HTTP responses."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify, request
from gatehouse.common.logs import hash_ip
from gatehouse.common.ratelimit import FailureThrottle, Throttled
from gatehouse.common.web import error_response

from .agents import AgentService
from .audit import EVENT_PATTERN, SqlAuditLog
from .interfaces import (
    Agent,
    AgentNotFound,
    InitialPasswordExpired,
    InvalidCredentials,
    InvalidCurrentPassword,
    InvalidPassword,
    ResetTokenInvalid,
)
from .notices import RedisNoticeLimiter, notice_params
from .relay import MailRelay
from .resets import ResetService
from .throttling import ThrottleLimits

log = logging.getLogger(__name__)

blueprint = Blueprint("identity", __name__)

NOTICE_EVENTS = (
    "password_changed",
    "factor_changed",
    "recovery_code_used",
    "recovery_codes_renewed",
    "sessions_ended",
    "factor_enrolled",
    "browser_remembered",
    "new_browser",
    "second_factor_replayed",
)
MAX_DETAIL_BYTES = 4096
MAX_URL_LENGTH = 512
DEFAULT_AUDIT_LIMIT = 50
MAX_AUDIT_LIMIT = 500
# Agent ids are 32-bit database integers; larger path values are simply not found.
MAX_ID = 2**31 - 1


@dataclass
class IdentityServices:
    agents: AgentService
    resets: ResetService
    audit: SqlAuditLog
    outbox: MailRelay
    limits: ThrottleLimits
    reset_throttle: FailureThrottle
    log_hash_key: str
    notice_limiter: RedisNoticeLimiter | None = None


class BadRequest(Exception):
    """A malformed request body; the message names the field and the problem."""


def services() -> IdentityServices:
    return current_app.extensions["identity"]


def _body() -> dict:
    try:
        body = request.get_json(silent=True)
    except RecursionError as error:
        # silent=True covers ValueError only, and JSON nested deeper than the
        # recursion limit raises RecursionError.
        raise BadRequest("The request body is nested too deeply.") from error
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _text(body: dict, name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Field {name!r} is missing or not a string.")
    _reject_surrogates(name, value)
    return value


def _reject_surrogates(name: str, value: str) -> None:
    # JSON may escape a lone surrogate ("\ud800"), which neither the database nor
    # a hash function can encode as UTF-8.
    if any(0xD800 <= ord(character) <= 0xDFFF for character in value):
        raise BadRequest(
            f"Field {name!r} contains a lone surrogate, which is not text."
        )


def _client(body: dict) -> tuple[str | None, str | None]:
    client_ip = body.get("client_ip")
    user_agent = body.get("user_agent")
    client_ip = client_ip if isinstance(client_ip, str) else None
    user_agent = user_agent if isinstance(user_agent, str) else None
    for name, value in (("client_ip", client_ip), ("user_agent", user_agent)):
        if value is not None:
            _reject_surrogates(name, value)
    return client_ip, user_agent


def _throttled(error: Throttled):
    response, status = error_response(
        429,
        "throttled",
        "Too many attempts. Try again later.",
        retry_after=error.retry_after,
    )
    response.headers["Retry-After"] = str(error.retry_after)
    return response, status


def _invalid_credentials():
    return error_response(401, "invalid_credentials", "invalid user name or password")


@blueprint.errorhandler(BadRequest)
def _bad_request(error: BadRequest):
    return error_response(400, "invalid_request", str(error))


@blueprint.errorhandler(AgentNotFound)
def _not_found(error: AgentNotFound):
    return error_response(404, "not_found", str(error))


@blueprint.errorhandler(InvalidPassword)
def _invalid_password(error: InvalidPassword):
    return error_response(400, "invalid_password", str(error))


@blueprint.errorhandler(ResetTokenInvalid)
def _invalid_token(error: ResetTokenInvalid):
    return error_response(404, "invalid_or_expired", str(error))


@blueprint.errorhandler(Throttled)
def _throttled_handler(error: Throttled):
    return _throttled(error)


@blueprint.post("/v1/authenticate")
def authenticate():
    body = _body()
    login, password = _text(body, "login"), _text(body, "password")
    client_ip, user_agent = _client(body)
    device_cookie = _text(body, "device_cookie", required=False)
    found = services()
    ip_hash = hash_ip(found.log_hash_key, client_ip)

    try:
        agent = found.agents.authenticate(login, password, ip_hash, device_cookie)
    except Throttled as error:
        found.audit.record(
            "login_throttled",
            found.agents.known_agent_id(login),
            client_ip,
            user_agent,
            {"limit": error.limit_name},
        )
        log.warning(
            "identity.login_throttled",
            extra={
                "limit": error.limit_name,
                "ip_hash": ip_hash,
                "retry_after": error.retry_after,
            },
        )
        return _throttled(error)
    except InvalidCredentials:
        # Both unknown logins and wrong passwords land here, with one response.
        found.audit.record(
            "login_failed", found.agents.known_agent_id(login), client_ip, user_agent
        )
        log.info("identity.login_failed", extra={"ip_hash": ip_hash})
        return _invalid_credentials()

    try:
        agent = _check_password_state(found, agent, password)
    except InitialPasswordExpired as error:
        # Only a correct password gets here, so this response reveals nothing
        # about which logins exist.
        found.audit.record(
            "login_rejected",
            agent.id,
            client_ip,
            user_agent,
            {"reason": "initial_password_expired"},
        )
        return error_response(403, "initial_password_expired", str(error))

    found.audit.record("login_succeeded", agent.id, client_ip, user_agent)
    log.info("identity.login_succeeded", extra={"agent_id": agent.id})
    return jsonify(agent=agent.to_json())


def _check_password_state(
    found: IdentityServices, agent: Agent, password: str
) -> Agent:
    """Reject an expired initial password and mark a breached password for a
    change; return the agent as it is now. Runs only after a correct password."""
    found.agents.check_initial_password(agent)
    return found.agents.require_change_if_breached(agent, password)


@blueprint.get(f"/v1/agents/<int(max={MAX_ID}):agent_id>")
def get_agent(agent_id: int):
    return jsonify(agent=services().agents.repository.get(agent_id).to_json())


def _after_password_change(
    agent: Agent, event: str, client_ip: str | None, user_agent: str | None
) -> None:
    found = services()
    found.audit.record(event, agent.id, client_ip, user_agent)
    # NOTE: the notice row is written right after the password transaction, not
    # inside it, so a crash between the two commits loses this one notice.
    found.outbox.store.add_notice(agent.id, {"event": "password_changed"})
    found.outbox.wake()


@blueprint.post(f"/v1/agents/<int(max={MAX_ID}):agent_id>/password")
def change_password(agent_id: int):
    body = _body()
    new_password = _text(body, "new_password")
    confirm = _text(body, "new_password_confirm")
    current = _text(body, "current_password", required=False)
    device_cookie = _text(body, "device_cookie", required=False)
    client_ip, user_agent = _client(body)
    found = services()

    try:
        agent = found.agents.change_password(
            agent_id,
            new_password,
            confirm,
            current,
            hash_ip(found.log_hash_key, client_ip),
            device_cookie,
        )
    except InvalidCurrentPassword as error:
        found.audit.record(
            "password_change_failed",
            agent_id,
            client_ip,
            user_agent,
            {"reason": "invalid_current_password"},
        )
        return error_response(403, "invalid_current_password", str(error))

    _after_password_change(agent, "password_changed", client_ip, user_agent)
    return jsonify(agent=agent.to_json())


@blueprint.post("/v1/password-resets")
def request_password_reset():
    body = _body()
    login = _text(body, "login")
    reset_url_base = _text(body, "reset_url_base")
    if (
        not reset_url_base.startswith(("http://", "https://"))
        or len(reset_url_base) > MAX_URL_LENGTH
    ):
        raise BadRequest("Field 'reset_url_base' must be an http(s) URL.")
    client_ip, user_agent = _client(body)
    found = services()
    ip_hash = hash_ip(found.log_hash_key, client_ip)

    limits = found.limits.reset_limits(login, ip_hash)
    try:
        found.reset_throttle.check(limits)
    except Throttled as error:
        log.warning(
            "identity.reset_throttled",
            extra={"limit": error.limit_name, "ip_hash": ip_hash},
        )
        return _throttled(error)
    try:
        found.reset_throttle.record_failure(limits)
    except Throttled:
        pass  # This request filled the window; it still counts as allowed.

    # The request is stored as it is, and the relay looks the login up after
    # this response, so the response is the same in content and time.
    found.outbox.store.add_reset_request(login, reset_url_base, ip_hash, user_agent)
    found.outbox.wake()
    return jsonify({}), 202


@blueprint.get("/v1/password-resets/<token>")
def check_password_reset(token: str):
    return jsonify(agent_id=services().resets.resolve(token))


@blueprint.post("/v1/password-resets/<token>")
def complete_password_reset(token: str):
    body = _body()
    new_password = _text(body, "new_password")
    confirm = _text(body, "new_password_confirm")
    client_ip, user_agent = _client(body)

    agent = services().resets.complete(token, new_password, confirm)
    _after_password_change(agent, "password_reset_completed", client_ip, user_agent)
    return jsonify(agent=agent.to_json())


@blueprint.post("/v1/audit")
def record_audit_event():
    body = _body()
    agent_id = body.get("agent_id")
    if agent_id is not None and (
        not isinstance(agent_id, int)
        or isinstance(agent_id, bool)
        or not 0 < agent_id <= MAX_ID
    ):
        raise BadRequest("Field 'agent_id' must be a positive integer or null.")
    event = _text(body, "event")
    if not EVENT_PATTERN.match(event):
        raise BadRequest(
            "Field 'event' must be 1 to 64 characters of a-z, 0-9, _ "
            "and ., starting with a letter."
        )
    detail = body.get("detail") or {}
    if not isinstance(detail, dict):
        raise BadRequest("Field 'detail' must be a JSON object.")
    if len(jsonify(detail).get_data()) > MAX_DETAIL_BYTES:
        raise BadRequest(f"Field 'detail' is larger than {MAX_DETAIL_BYTES} bytes.")
    client_ip, user_agent = _client(body)

    services().audit.record(event, agent_id, client_ip, user_agent, detail)
    return jsonify({}), 201


@blueprint.get(f"/v1/agents/<int(max={MAX_ID}):agent_id>/audit")
def list_audit_events(agent_id: int):
    raw_limit = request.args.get("limit", str(DEFAULT_AUDIT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_AUDIT_LIMIT:
        raise BadRequest(
            f"Parameter 'limit' must be an integer from 1 to {MAX_AUDIT_LIMIT}."
        )
    events = services().audit.list_for_agent(agent_id, int(raw_limit))
    return jsonify(events=events)


@blueprint.post(f"/v1/agents/<int(max={MAX_ID}):agent_id>/notices")
def queue_notice(agent_id: int):
    body = _body()
    event = _text(body, "event")
    if event not in NOTICE_EVENTS:
        raise BadRequest(f"Field 'event' must be one of {', '.join(NOTICE_EVENTS)}.")
    found = services()
    agent = found.agents.repository.get(agent_id)
    limiter = found.notice_limiter
    if limiter is not None and not limiter.claim(agent.id, event):
        log.info(
            "identity.notice_skipped", extra={"agent_id": agent.id, "event": event}
        )
        return jsonify(skipped=True), 202

    found.outbox.store.add_notice(agent.id, notice_params(event, body.get("browser")))
    found.outbox.wake()
    return jsonify({}), 202
