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
    ("Chrome", re.compile(r"\b(Chrome|Chromium|CriOS)/")),
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
