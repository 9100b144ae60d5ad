"""The identity HTTP API: maps JSON requests and domain errors to HTTP responses."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify, request
from gatehouse.common.logs import hash_ip
from gatehouse.common.mail import (
    KIND_NOTICE,
    KIND_PASSWORD_RESET,
    MailJob,
    PublishFailed,
)
from gatehouse.common.ratelimit import FailureThrottle, Throttled
from gatehouse.common.web import error_response

from .agents import AgentService
from .audit import EVENT_PATTERN, SqlAuditLog
from .interfaces import (
    Agent,
    AgentNotFound,
    InvalidCredentials,
    InvalidCurrentPassword,
    InvalidPassword,
    ResetTokenInvalid,
)
from .outbox import MailOutbox
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
    outbox: MailOutbox
    limits: ThrottleLimits
    reset_throttle: FailureThrottle
    log_hash_key: str


class BadRequest(Exception):
    """A malformed request body; the message names the field and the problem."""


def services() -> IdentityServices:
    return current_app.extensions["identity"]


def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _text(body: dict, name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Field {name!r} is missing or not a string.")
    return value


def _client(body: dict) -> tuple[str | None, str | None]:
    client_ip = body.get("client_ip")
    user_agent = body.get("user_agent")
    return (
        client_ip if isinstance(client_ip, str) else None,
        user_agent if isinstance(user_agent, str) else None,
    )


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
    found = services()
    ip_hash = hash_ip(found.log_hash_key, client_ip)

    try:
        agent = found.agents.authenticate(login, password, ip_hash)
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

    found.audit.record("login_succeeded", agent.id, client_ip, user_agent)
    log.info("identity.login_succeeded", extra={"agent_id": agent.id})
    return jsonify(agent=agent.to_json())


@blueprint.get(f"/v1/agents/<int(max={MAX_ID}):agent_id>")
def get_agent(agent_id: int):
    return jsonify(agent=services().agents.repository.get(agent_id).to_json())


def _after_password_change(
    agent: Agent, event: str, client_ip: str | None, user_agent: str | None
) -> None:
    found = services()
    found.audit.record(event, agent.id, client_ip, user_agent)
    found.outbox.submit(lambda: _send_notice(found.outbox, agent, "password_changed"))


@blueprint.post(f"/v1/agents/<int(max={MAX_ID}):agent_id>/password")
def change_password(agent_id: int):
    body = _body()
    new_password = _text(body, "new_password")
    confirm = _text(body, "new_password_confirm")
    current = _text(body, "current_password", required=False)
    client_ip, user_agent = _client(body)
    found = services()

    try:
        agent = found.agents.change_password(
            agent_id,
            new_password,
            confirm,
            current,
            hash_ip(found.log_hash_key, client_ip),
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


def _send_reset_mail(
    found: IdentityServices,
    login: str,
    reset_url_base: str,
    client_ip: str | None,
    user_agent: str | None,
) -> None:
    issued = found.resets.request(login)
    if issued is None:
        return
    agent, token = issued
    found.audit.record("password_reset_requested", agent.id, client_ip, user_agent)

    ttl = found.resets.ttl_seconds
    job = MailJob(
        kind=KIND_PASSWORD_RESET,
        to=agent.email,
        agent_id=agent.id,
        first_name=agent.first_name,
        params={"link": reset_url_base + token, "ttl_seconds": ttl},
        email_security=found.outbox.email_security(agent.id),
        expires_at=time.time() + ttl,
    )
    found.outbox.publish_with_retries(job)


def _send_notice(outbox: MailOutbox, agent: Agent, event: str) -> None:
    job = MailJob(
        kind=KIND_NOTICE,
        to=agent.email,
        agent_id=agent.id,
        first_name=agent.first_name,
        params={"event": event},
        email_security=outbox.email_security(agent.id),
    )
    outbox.publish_with_retries(job)


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

    # Everything that depends on whether the login exists runs on the outbox
    # thread after this response, so the response is the same in content and time.
    found.outbox.submit(
        lambda: _send_reset_mail(found, login, reset_url_base, client_ip, user_agent)
    )
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

    job = MailJob(
        kind=KIND_NOTICE,
        to=agent.email,
        agent_id=agent.id,
        first_name=agent.first_name,
        params={"event": event},
        email_security=found.outbox.email_security(agent.id),
    )
    try:
        found.outbox.publisher.publish(job)
    except PublishFailed:
        log.error(
            "identity.notice_not_queued", extra={"agent_id": agent.id, "event": event}
        )
        return error_response(
            503, "mail_unavailable", "The mail queue is unavailable; try again later."
        )
    return jsonify({}), 202
