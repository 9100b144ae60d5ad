"""The login device cookie in the browser: read it, renew it, notice new browsers.

The cookie's format and MAC live in ``gatehouse.common.device_cookie``. Identity
checks it on every password entry, and the gateway renews it after each complete
sign-in, so a browser the agent uses keeps its own failure window.
"""

from __future__ import annotations

from flask import after_this_request, current_app, request, session
from gatehouse.common.device_cookie import MAX_COOKIE_LENGTH, DeviceCookieCodec

from . import display


def _codec() -> DeviceCookieCodec:
    return current_app.extensions["device_cookies"]


def device_cookie() -> str | None:
    """Return the browser's login device cookie for identity, or None."""
    value = request.cookies.get(current_app.config["LOGIN_DEVICE_COOKIE_NAME"])
    if not value or len(value) > MAX_COOKIE_LENGTH:
        return None
    return value


def browser_description() -> str:
    """Return a short description such as "Firefox on Linux" of this browser.

    The description goes into notice mails, so it is one of the known names and
    never an excerpt of the User-Agent header, which the sender chooses freely.
    """
    return display.known_browser_name(request.user_agent.string) or "unknown browser"


def renew_device_cookie() -> bool:
    """Set a renewed cookie entry for the session's login on this response.

    Return True if the browser had no valid entry for the login before, which
    makes it a new browser for that agent.
    """
    codec = _codec()
    login = session["login"]
    current = device_cookie()
    is_new = codec.find(current, login) is None
    value = codec.issue(current, login)

    @after_this_request
    def _set_cookie(response):
        response.set_cookie(
            current_app.config["LOGIN_DEVICE_COOKIE_NAME"],
            value,
            max_age=codec.lifetime_seconds,
            httponly=True,
            secure=current_app.config["HTTPS"],
            samesite="Lax",
            path="/",
        )
        return response

    return is_new
