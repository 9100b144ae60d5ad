"""Garbage on the pages and cookies the security-key, device-cookie and
password-state features added, against a real local stack: never a 5xx."""

import os

import pytest
from support.flows import Agent, enroll_app, first_login, unique_login
from support.smtp import SmtpSink
from support.stack import LocalStack
from support.web import Browser

EXTRA_ENV = {
    "IDENTITY_IP_MAX_FAILURES": "10000",
    "IDENTITY_GLOBAL_MAX_FAILURES": "100000",
    "GATEWAY_REAUTHENTICATION_WINDOW": "600",
}
DEVICE_ENTRY = "0" * 32 + ".1700000000." + "0" * 32


@pytest.fixture(scope="module")
def stack():
    if os.environ.get("GATEHOUSE_TARGET_URL"):
        pytest.skip("needs its own local stack")
    sink = SmtpSink().start()
    # "localhost" makes the gateway offer security keys (an IP is no RP ID).
    started = LocalStack(sink.port, extra_env=EXTRA_ENV, public_host="localhost")
    started.start()
    yield started
    started.stop()
    sink.stop()


@pytest.fixture(scope="module")
def signed_in(stack):
    login = unique_login("garbage")
    agent = Agent(login, f"{login}@example.test", "Gar", "Bage", "initial password 1")
    result = stack.agentctl(
        "agent", "add", login, "--email", agent.email, "--first-name", "Gar",
        "--last-name", "Bage", "--password", agent.password,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    browser = Browser(stack.url)
    first_login(browser, agent)
    _secret, page = enroll_app(browser)
    assert page.name == "dashboard", page
    return browser


def _assert_handled(page) -> None:
    assert page.status < 500, page
    assert "Traceback" not in page.text


@pytest.mark.parametrize(
    "data",
    [
        {"name": "Key", "credential": "[" * 3000},
        {"name": "Key", "credential": '{"id": "\\ud800", "response": {}}'},
        {"name": "K\u00e9y \U0001f511", "credential": '{"id": "a", "response": {}}'},
        {"name": "\x00\x01", "credential": '{"id": "a", "response": {}}'},
        {"name": "x" * 5000, "credential": "{}"},
        {"credential": '{"id": "a", "rawId": "a", "response": {"x": 1}}'},
    ],
)
def test_key_setup_garbage(signed_in, data):
    signed_in.get("/agent/2fa/setup/security-key")

    _assert_handled(signed_in.post("/agent/2fa/setup/security-key", data))


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/agent/preferences/security/forget-browser", {"handle": "../../factors/1"}),
        ("/agent/preferences/security/forget-browser", {"handle": "\u00e9" * 70}),
        ("/agent/preferences/security/forget-browser", {}),
        ("/agent/preferences/security/security-keys/remove", {"key_id": "1e99"}),
        ("/agent/preferences/security/security-keys/remove", {"key_id": "-1"}),
        ("/agent/preferences/security/security-keys/remove", {"key_id": "\u0661"}),
        ("/agent/preferences/security/sessions/end", {"handle": "\u00e9\x00"}),
    ],
)
def test_security_actions_garbage(signed_in, path, data):
    signed_in.get("/agent/preferences/security")

    page = signed_in.post(path, data)

    _assert_handled(page)
    assert signed_in.get("/agent/dashboard").name == "dashboard"


@pytest.mark.parametrize(
    "cookie",
    [
        DEVICE_ENTRY,
        "-".join([DEVICE_ENTRY] * 50),
        DEVICE_ENTRY.replace("0", "\u0660", 3),
        "%ED%A0%80",
        "\u00e9\u00ff",
    ],
)
def test_login_device_cookie_garbage(stack, cookie):
    browser = Browser(stack.url)
    browser.get("/agent")
    # A raw header, so non-ASCII bytes reach the gateway as they are; it replaces
    # the cookie jar, so it carries the session cookie too.
    jar = "; ".join(f"{item.name}={item.value}" for item in browser.session.cookies)
    raw = f"{jar}; gatehouse_login_device={cookie}".encode()
    browser.session.headers["Cookie"] = raw.decode("latin-1")

    page = browser.post("/agent", {"login": "nobody\u00e9", "password": "wrong one"})

    _assert_handled(page)
    assert page.status == 401
