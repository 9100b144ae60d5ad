"""Jinja filters that turn stored values into words for the pages."""

from __future__ import annotations

import datetime
import re

ENCRYPTION_LABELS = {"pgp": "PGP", "smime": "S/MIME"}

# Checked in order: Edge and Opera also claim to be Chrome, Chrome claims Safari.
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(e|A|iOS)?/")),
    ("Opera", re.compile(r"\bOPR/")),
    ("Firefox", re.compile(r"\bFirefox/")),
    # Headless Chromium sends "HeadlessChrome/", with no word boundary before "Chrome".
    ("Chrome", re.compile(r"\b(Headless)?(Chrome|Chromium|CriOS)/")),
    ("Safari", re.compile(r"\bSafari/")),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


# Audit event names as the security page shows them; others show their name.
EVENT_LABELS = {
    "login_succeeded": "Password accepted",
    "login_failed": "Wrong password",
    "login_throttled": "Sign-in blocked after too many attempts",
    "login_rejected": "Expired initial password refused",
    "password_changed": "Password changed",
    "password_change_failed": "Password change failed",
    "password_reset_requested": "Password reset link sent",
    "password_reset_completed": "Password set with a reset link",
    "second_factor_succeeded": "Second step passed",
    "second_factor_failed": "Wrong code or key",
    "second_factor_throttled": "Second step blocked after too many attempts",
    "second_factor_replayed": "A code was used twice",
    "second_factor_skipped": "Second step skipped in a remembered browser",
    "second_factor_reset_by_operator": "Second factor removed by an operator",
    "factor_enrolled": "Second factor set up",
    "factor_changed": "Second factor changed",
    "recovery_code_used": "Recovery code used",
    "recovery_codes_renewed": "New recovery codes created",
    "browser_remembered": "Browser remembered",
    "browser_forgotten": "Remembered browser forgotten",
    "browsers_forgotten": "All remembered browsers forgotten",
    "new_browser_signin": "Sign-in from a new browser",
    "session_ended": "Signed out",
    "sessions_ended": "Other sessions ended",
}


def event_label(event: str) -> str:
    return EVENT_LABELS.get(event, event.replace("_", " "))


def encryption_label(method: str | None) -> str:
    return ENCRYPTION_LABELS.get(method or "", "no encryption")


def utc_time(value: float | str | None) -> str:
    """Return "2026-12-04 15:55" for a Unix time or an ISO 8601 string."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value[:16]
    else:
        moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M")


def known_browser_name(user_agent: str | None) -> str | None:
    """Return "Firefox on Linux" for a User-Agent header, or None when it names
    no known browser or system."""
    text = user_agent or ""
    browser = next((name for name, pattern in _BROWSERS if pattern.search(text)), None)
    system = next((name for marker, name in _SYSTEMS if marker in text), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system


def browser_name(user_agent: str | None) -> str:
    """Return "Firefox on Linux" for a User-Agent header, or a short excerpt."""
    known = known_browser_name(user_agent)
    if known:
        return known
    return (user_agent or "")[:40] or "unknown browser"
