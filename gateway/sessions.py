"""Server-side browser sessions in Redis.

The cookie carries only a random session id; Redis stores the session under a
SHA-256 of that id, so a copy of Redis contains no usable cookie. The session data
itself is sealed with AES-GCM under a key derived from the session id, so a copy
of Redis (or of its append-only file) reveals no CSRF token, reset token or
set-up secret either. Only the few fields the security page lists for other
sessions (times, browser, step) are stored in clear. Sessions end after
an idle timeout (the Redis TTL, refreshed on every request) and an absolute
timeout counted from the login. Every session of an agent is indexed, so a
password change or "sign out everywhere" can end them all on the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

log = logging.getLogger(__name__)


class RedisSession(CallbackDict, SessionMixin):
    """Session data plus the bookkeeping the interface needs to save it."""

    def __init__(
        self,
        initial: dict | None = None,
        session_id: str | None = None,
        new: bool = False,
    ) -> None:
        def on_update(_self):
            self.modified = True

        super().__init__(initial, on_update)
        self.session_id = session_id
        self.new = new
        self.modified = False
        self.rotate_requested = False
        self.end_requested = False

    def rotate(self) -> None:
        """Give this session a new id at the next save, keeping its data."""
        self.rotate_requested = True
        self.modified = True

    def end(self) -> None:
        """Delete this session on the server and expire its cookie."""
        self.clear()
        self.end_requested = True


# Fields kept in clear beside the sealed data, so the security page can list an
# agent's other sessions without their keys.
PUBLIC_FIELDS = ("_created", "_seen", "agent_id", "stage", "user_agent")


def _storage_key(prefix: str, session_id: str) -> str:
    return prefix + "session:" + hashlib.sha256(session_id.encode()).hexdigest()


def _sealing_key(session_id: str) -> AESGCM:
    # The session id carries 256 random bits, so one hash makes a uniform key.
    key = hashlib.sha256(b"gatehouse session data:" + session_id.encode()).digest()
    return AESGCM(key)


def _seal(session_id: str, storage_key: str, data: dict) -> str:
    nonce = os.urandom(12)
    sealed = _sealing_key(session_id).encrypt(
        nonce, json.dumps(data).encode(), storage_key.encode()
    )
    return base64.b64encode(nonce + sealed).decode()


def _unseal(session_id: str, storage_key: str, blob: str) -> dict | None:
    raw = base64.b64decode(blob)
    try:
        plain = _sealing_key(session_id).decrypt(
            raw[:12], raw[12:], storage_key.encode()
        )
    except InvalidTag:
        return None
    return json.loads(plain)


class RedisSessionStore:
    """Read, write and end sessions; shared by the session interface and views."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        idle_timeout: int,
        absolute_timeout: int,
    ) -> None:
        self.client = client
        self.prefix = key_prefix
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout

    def _agent_index(self, agent_id: int) -> str:
        return f"{self.prefix}agent-sessions:{agent_id}"

    def load(self, session_id: str) -> dict | None:
        key = _storage_key(self.prefix, session_id)
        raw = self.client.get(key)
        if raw is None:
            return None
        stored = json.loads(raw)
        if not isinstance(stored, dict) or "sealed" not in stored:
            return None
        public = stored["public"]
        if time.time() - public.get("_created", 0) > self.absolute_timeout:
            self.delete(session_id, public.get("agent_id"))
            return None
        return _unseal(session_id, key, stored["sealed"])

    def save(self, session_id: str, data: dict) -> None:
        key = _storage_key(self.prefix, session_id)
        remaining = self.absolute_timeout - (time.time() - data["_created"])
        ttl = max(1, int(min(self.idle_timeout, remaining)))
        stored = {
            "public": {name: data[name] for name in PUBLIC_FIELDS if name in data},
            "sealed": _seal(session_id, key, data),
        }
        pipe = self.client.pipeline()
        pipe.set(key, json.dumps(stored), ex=ttl)
        agent_id = data.get("agent_id")
        if agent_id is not None:
            index = self._agent_index(agent_id)
            pipe.sadd(index, key)
            pipe.expire(index, self.absolute_timeout)
        pipe.execute()

    def delete(self, session_id: str, agent_id: int | None) -> None:
        key = _storage_key(self.prefix, session_id)
        pipe = self.client.pipeline()
        pipe.delete(key)
        if agent_id is not None:
            pipe.srem(self._agent_index(agent_id), key)
        pipe.execute()

    def end_all(self, agent_id: int, keep_session_id: str | None = None) -> int:
        """End every session of ``agent_id`` except ``keep_session_id``."""
        index = self._agent_index(agent_id)
        keep = _storage_key(self.prefix, keep_session_id) if keep_session_id else None
        keys = [key.decode() for key in self.client.smembers(index)]
        doomed = [key for key in keys if key != keep]
        if doomed:
            pipe = self.client.pipeline()
            pipe.delete(*doomed)
            pipe.srem(index, *doomed)
            pipe.execute()
        return len(doomed)

    def list_for_agent(
        self, agent_id: int, current_session_id: str | None
    ) -> list[dict]:
        """Return the agent's live sessions, most recently used first."""
        index = self._agent_index(agent_id)
        keys = sorted(key.decode() for key in self.client.smembers(index))
        if not keys:
            return []
        current = (
            _storage_key(self.prefix, current_session_id)
            if current_session_id
            else None
        )
        sessions, expired = [], []
        for key, raw in zip(keys, self.client.mget(keys), strict=True):
            if raw is None:
                expired.append(key)
                continue
            data = json.loads(raw)["public"]
            sessions.append(
                {
                    "handle": _handle(key),
                    "created": data.get("_created"),
                    "last_seen": data.get("_seen"),
                    "user_agent": data.get("user_agent", ""),
                    "signed_in": data.get("stage") == "done",
                    "current": key == current,
                }
            )
        if expired:
            self.client.srem(index, *expired)
        return sorted(sessions, key=lambda item: item["last_seen"] or 0, reverse=True)

    def end_by_handle(self, agent_id: int, handle: str) -> bool:
        """End the agent's session whose handle is ``handle``; False if none."""
        # Handles are hex digests, and compare_digest raises on non-ASCII text.
        if not handle.isascii():
            return False
        index = self._agent_index(agent_id)
        for raw_key in self.client.smembers(index):
            key = raw_key.decode()
            if hmac.compare_digest(_handle(key), handle):
                pipe = self.client.pipeline()
                pipe.delete(key)
                pipe.srem(index, key)
                pipe.execute()
                return True
        return False


def _handle(storage_key: str) -> str:
    """Name a session on the security page without revealing its storage key."""
    return hashlib.sha256(b"handle:" + storage_key.encode()).hexdigest()[:20]


class RedisSessionInterface(SessionInterface):
    def __init__(
        self, store: RedisSessionStore, cookie_name: str, secure: bool
    ) -> None:
        self.store = store
        self.cookie_name = cookie_name
        self.secure = secure

    def open_session(self, app: Flask, request: Request) -> RedisSession:
        session_id = request.cookies.get(self.cookie_name)
        if session_id and len(session_id) <= 128:
            data = self.store.load(session_id)
            if data is not None:
                return RedisSession(data, session_id=session_id)
        return RedisSession({"_created": time.time()}, new=True)

    def save_session(
        self, app: Flask, session: RedisSession, response: Response
    ) -> None:
        cookie = {
            "httponly": True,
            "secure": self.secure,
            "samesite": "Lax",
            "path": "/",
        }
        if session.end_requested:
            if session.session_id:
                self.store.delete(session.session_id, session.get("agent_id"))
            response.delete_cookie(self.cookie_name, **cookie)
            return
        # An anonymous session that stores nothing (a health probe, a static file)
        # needs neither a Redis key nor a cookie.
        if session.new and not session.modified:
            return
        if session.rotate_requested or session.session_id is None:
            if session.session_id:
                self.store.delete(session.session_id, session.get("agent_id"))
            session.session_id = secrets.token_urlsafe(32)
        data = dict(session)
        data.setdefault("_created", time.time())
        data["_seen"] = time.time()
        self.store.save(session.session_id, data)
        response.set_cookie(self.cookie_name, session.session_id, **cookie)
        response.vary.add("Cookie")
