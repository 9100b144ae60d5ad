"""A scripted browser for the functional tests: requests plus a little HTML parsing."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

TOKEN_PATTERN = re.compile(r"(?m)^\s*(\d{6,10})\s*$")
RESET_LINK_PATTERN = re.compile(r"https?://\S+/agent/password/reset/\S+")


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.data_page: str | None = None
        self.inputs: list[dict[str, str]] = []
        self.forms: list[dict[str, str]] = []
        self.attributes: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        attributes["_tag"] = tag
        self.attributes.append(attributes)
        if tag == "body":
            self.data_page = attributes.get("data-page")
        elif tag == "input":
            self.inputs.append(attributes)
        elif tag == "form":
            self.forms.append(attributes)


class Page:
    """A parsed gateway response."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.text = response.text
        self.url = response.url
        parser = _PageParser()
        parser.feed(self.text)
        self.name = parser.data_page
        self.inputs = parser.inputs
        self.forms = parser.forms
        self.elements = parser.attributes

    @property
    def csrf_token(self) -> str:
        for field in self.inputs:
            if field.get("name") == "csrf_token":
                return field["value"]
        raise AssertionError(f"page {self.name!r} has no csrf_token field")

    def input_named(self, name: str) -> dict[str, str]:
        for field in self.inputs:
            if field.get("name") == name:
                return field
        raise AssertionError(f"page {self.name!r} has no input named {name!r}")

    def attribute(self, name: str) -> str:
        for element in self.elements:
            if name in element:
                return element[name]
        raise AssertionError(f"page {self.name!r} has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<Page {self.name} {self.status} {self.url}>"


class Browser:
    """A cookie-keeping client that submits forms with the page's CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.page: Page | None = None

    def get(self, path: str, **kwargs) -> Page:
        self.page = Page(
            self.session.get(urljoin(self.base_url, path), timeout=30, **kwargs)
        )
        return self.page

    def post(self, path: str, data: dict, csrf: bool = True, **kwargs) -> Page:
        """Post ``data``; with ``csrf`` the token of the current page is added."""
        form = dict(data)
        if csrf:
            form["csrf_token"] = self.page.csrf_token
        self.page = Page(
            self.session.post(
                urljoin(self.base_url, path), data=form, timeout=30, **kwargs
            )
        )
        return self.page

    def login(self, login: str, password: str) -> Page:
        self.get("/agent")
        return self.post("/agent", {"login": login, "password": password})


def totp_now(secret: str, offset_steps: int = 0) -> str:
    """Compute the current TOTP code with oathtool, an independent implementation."""
    arguments = ["oathtool", "--totp", "-b", secret]
    if offset_steps:
        arguments.append(f"--now=now {offset_steps * 30:+d} seconds")
    return subprocess.run(
        arguments, capture_output=True, text=True, check=True
    ).stdout.strip()


def text_part(message) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "mail has no text/plain part"
    return part.get_content()


def token_in(message) -> str:
    matches = TOKEN_PATTERN.findall(text_part(message))
    assert len(matches) == 1, f"expected one token line, found {len(matches)}"
    return matches[0]


def reset_link_in(message) -> str:
    links = RESET_LINK_PATTERN.findall(text_part(message))
    assert len(links) == 1, f"expected one reset link, found {len(links)}"
    return links[0]


def _plain_text(message) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def is_reset_mail(mail) -> bool:
    """Tell a plain reset mail from the others; encrypted mails are never one."""
    return bool(RESET_LINK_PATTERN.search(_plain_text(mail.message)))


def is_token_mail(mail) -> bool:
    """Tell a plain token mail from the others; encrypted mails are never one."""
    return bool(TOKEN_PATTERN.search(_plain_text(mail.message)))
