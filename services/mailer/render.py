"""Render a mail job into a plain-text message with generic, secret-free subjects.

The subject and headers travel unencrypted even in an encrypted mail, so they
never carry the token or the link; only the body does.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from urllib.parse import urlsplit

from gatehouse.common.mail import KIND_NOTICE, KIND_PASSWORD_RESET, KIND_TOKEN, MailJob

from .interfaces import PermanentDeliveryError
from .settings import MailerSettings

RESET_PATH_PREFIX = "/agent/password/reset/"
_TOKEN_PATTERN = re.compile(r"^[0-9]{4,12}$")
_ADDRESS_PATTERN = re.compile(
    r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9.-]+\.?[A-Za-z0-9-]*$"
)
_MESSAGE_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
ENROLLMENT_PURPOSES = ("enrollment", "setup")

NOTICES = {
    "password_changed": (
        "Your {product} password was changed",
        "The password of your {product} account was just changed.",
    ),
    "factor_changed": (
        "Your {product} sign-in method was changed",
        "The second sign-in step (two-factor authentication) of your {product} "
        "account was just changed.",
    ),
    "recovery_code_used": (
        "A {product} recovery code was used",
        "A recovery code was just used to sign in to your {product} account. "
        "Each recovery code works once.",
    ),
    "recovery_codes_renewed": (
        "New {product} recovery codes were created",
        "New recovery codes were just created for your {product} account. The "
        "previous recovery codes no longer work.",
    ),
    "factor_removed": (
        "Your {product} sign-in method was removed",
        "An administrator removed the second sign-in step of your {product} "
        "account and signed out every browser. You will set up a new second step "
        "at your next sign-in.",
    ),
    "sessions_ended": (
        "Your {product} sessions were ended",
        "All sessions of your {product} account were just ended, so every "
        "browser that was signed in has to sign in again.",
    ),
    "factor_enrolled": (
        "A sign-in method was added to your {product} account",
        "A second sign-in step (two-factor authentication) was just set up for "
        "your {product} account.",
    ),
    "browser_remembered": (
        "A browser was remembered for your {product} account",
        "A browser was just marked as trusted for your {product} account, so it "
        "skips the second sign-in step for a while.",
    ),
    "new_browser": (
        "New sign-in to your {product} account",
        "Your {product} account was just signed in to from a browser that had "
        "not signed in to it before (or whose record had expired).",
    ),
    "second_factor_replayed": (
        "A used {product} sign-in code was entered again",
        "Someone entered the correct password of your {product} account and "
        "then a sign-in code that had already been used. The code was rejected. "
        "If you signed in twice within a minute, for example in two browsers, "
        "this was you. Otherwise someone knows your password and has seen one "
        "of your codes: change your password now.",
    ),
}
# Notices that name the browser (job param "browser") and the time.
BROWSER_NOTICES = ("browser_remembered", "new_browser")


def _paragraph(text: str) -> str:
    return textwrap.fill(text, width=72)


def describe_validity(ttl_seconds: int) -> str:
    """Return "10 minutes" for 600, "1 hour" for 3600, "45 seconds" for 45."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if ttl_seconds >= size and ttl_seconds % size == 0:
            count = ttl_seconds // size
            return f"{count} {unit}" + ("" if count == 1 else "s")
    if ttl_seconds > 120:
        return f"{round(ttl_seconds / 60)} minutes"
    return f"{ttl_seconds} seconds"


def clean_address(address: str) -> str:
    """Return ``address`` unchanged if it is one bare mailbox.

    Raise PermanentDeliveryError for anything else (a display name, a list,
    a line break), so no job can add a header or a second recipient.
    """
    if (
        not isinstance(address, str)
        or len(address) > 254
        or _CONTROL_CHARACTERS.search(address)
        or not _ADDRESS_PATTERN.match(address)
        or parseaddr(address)[1] != address
    ):
        raise PermanentDeliveryError("malformed recipient address")
    return address


def _display_name(first_name: str) -> str:
    return _CONTROL_CHARACTERS.sub("", first_name).strip()[:100]


def _ttl(job: MailJob) -> int:
    ttl = job.params.get("ttl_seconds")
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
        raise PermanentDeliveryError(f"{job.kind} job has no positive ttl_seconds")
    return ttl


def _token_mail(job: MailJob, product: str) -> tuple[str, list[str]]:
    token = job.params.get("token")
    if not isinstance(token, str) or not _TOKEN_PATTERN.match(token):
        raise PermanentDeliveryError("token job has no token of 4 to 12 digits")
    validity = describe_validity(_ttl(job))
    if job.params.get("purpose") in ENROLLMENT_PURPOSES:
        intro = f"Use this code to confirm email as your {product} sign-in method:"
        outro = "If you did not start this set-up, tell your administrator."
    else:
        intro = f"Your {product} sign-in code is:"
        outro = (
            "If you did not try to sign in, someone may know your password: "
            "change it and tell your administrator."
        )
    body = [
        intro,
        token,
        _paragraph(f"The code is valid for {validity} and works once."),
        _paragraph(outro),
    ]
    return f"Your {product} sign-in code", body


def _reset_mail(job: MailJob, product: str) -> tuple[str, list[str]]:
    link = job.params.get("link")
    parts = urlsplit(link) if isinstance(link, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or not parts.path.startswith(RESET_PATH_PREFIX)
        or _CONTROL_CHARACTERS.search(link)
        or " " in link
    ):
        raise PermanentDeliveryError(
            f"password_reset job has no absolute link under {RESET_PATH_PREFIX}"
        )
    validity = describe_validity(_ttl(job))
    body = [
        _paragraph(
            f"Someone asked to reset the password of your {product} account. "
            "To choose a new password, open this link:"
        ),
        link,
        _paragraph(f"The link is valid for {validity} and works once."),
        _paragraph(
            "If you did not ask for this, ignore this mail: your password "
            "stays as it is."
        ),
    ]
    return f"Reset your {product} password", body


def _notice_mail(job: MailJob, product: str) -> tuple[str, list[str]]:
    event = job.params.get("event")
    if event not in NOTICES:
        raise PermanentDeliveryError(f"notice job has unknown event {event!r}")
    subject, text = NOTICES[event]
    body = [_paragraph(text.format(product=product))]
    if event in BROWSER_NOTICES:
        body.append(_browser_details(job))
    body.append(_paragraph("If this was not you, tell your administrator at once."))
    return subject.format(product=product), body


def _browser_details(job: MailJob) -> str:
    # The time is when the service queued the job, not when the mail goes out.
    moment = datetime.fromtimestamp(job.created_at, UTC).strftime("%Y-%m-%d %H:%M")
    browser = job.params.get("browser")
    if not isinstance(browser, str):
        browser = ""
    browser = _CONTROL_CHARACTERS.sub("", browser).strip()[:60] or "unknown browser"
    return f"Time: {moment} UTC\nBrowser: {browser}"


RENDERERS = {
    KIND_TOKEN: _token_mail,
    KIND_PASSWORD_RESET: _reset_mail,
    KIND_NOTICE: _notice_mail,
}


def render_text(job: MailJob, product: str = "gatehouse") -> tuple[str, str]:
    """Return (subject, text body); raise PermanentDeliveryError for invalid params."""
    subject, paragraphs = RENDERERS[job.kind](job, product)
    name = _display_name(job.first_name)
    greeting = f"Hello {name}," if name else "Hello,"
    signature = f"-- \n{product}"
    text = "\n\n".join([greeting, *paragraphs, signature]) + "\n"
    return subject, text


def text_part(text: str) -> EmailMessage:
    """Return a MIME entity with only the text: the body, or what gets encrypted."""
    part = EmailMessage(policy=SMTP)
    # 7bit keeps the token's line readable in the raw mail; quoted-printable
    # only for non-ASCII text (a name), never base64.
    cte = "7bit" if text.isascii() else "quoted-printable"
    part.set_content(text, charset="utf-8", cte=cte)
    return part


def set_headers(
    message: EmailMessage, job: MailJob, subject: str, settings: MailerSettings
) -> None:
    """Set From, To, Date, Message-ID, Subject and Auto-Submitted on ``message``.

    The policy encodes a non-ASCII subject or name as an RFC 2047 encoded word.
    Message-ID derives from the job's id, so a resent job keeps its Message-ID.
    """
    sender = settings.from_address
    username, _, domain = clean_address(job.to).partition("@")
    message["From"] = sender
    message["To"] = Address(
        display_name=_display_name(job.first_name), username=username, domain=domain
    )
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    local_part = job.message_id
    if not _MESSAGE_ID_PATTERN.match(local_part):
        local_part = hashlib.sha256(local_part.encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{local_part}@{sender.domain or 'localhost'}>"
    message["Auto-Submitted"] = "auto-generated"
