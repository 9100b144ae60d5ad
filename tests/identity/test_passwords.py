"""Password policy, normalization and hashing, through the identity services."""

from __future__ import annotations

import base64
import hashlib
import unicodedata

import pytest
from gatehouse.identity.interfaces import InvalidPassword
from gatehouse.identity.passwords import Argon2Hasher

GOOD = "correct horse battery"


def change(api, agent, new, current=None):
    body = {"new_password": new, "new_password_confirm": new, "client_ip": "192.0.2.1"}
    if current is not None:
        body["current_password"] = current
    return api.post(f"/v1/agents/{agent.id}/password", body)


def test_policy_rejects_short_password(api):
    with pytest.raises(InvalidPassword, match="at least 12"):
        api.make_agent(password="a" * 5 + "b" * 6)


LONG_PASSWORD = ("correct horse battery staple " * 40)[:1024]


def test_policy_accepts_1024_characters(api):
    agent = api.make_agent(password=LONG_PASSWORD)
    assert api.login(agent.login, LONG_PASSWORD).status_code == 200


def test_policy_rejects_1025_characters(api):
    with pytest.raises(InvalidPassword, match="too long"):
        api.make_agent(password=LONG_PASSWORD + "z")


def test_policy_counts_code_points_after_nfc(api):
    composed = "éèêëàâäôö"
    decomposed = unicodedata.normalize("NFD", composed + "üïî")
    assert len(decomposed) == 24
    agent = api.make_agent(password=decomposed)
    assert api.login(agent.login, composed + "üïî").status_code == 200
    with pytest.raises(InvalidPassword, match="too short"):
        api.make_agent(login="bob", password=unicodedata.normalize("NFD", "é" * 11))


@pytest.mark.parametrize(
    "common", ["password1234", "PASSWORD1234", "1qaz2wsx3edc", "QWERTY123456"]
)
def test_policy_rejects_common_password(api, common):
    with pytest.raises(InvalidPassword, match="commonly used"):
        api.make_agent(password=common)


@pytest.mark.parametrize(
    "password",
    ["Password123!", "iloveyou1234", "Sunshine2019!", "Dragon-Dragon-1987"],
)
def test_policy_rejects_guessable_password(api, password):
    with pytest.raises(InvalidPassword, match="easy to guess"):
        api.make_agent(password=password)


def test_policy_accepts_unrelated_word_phrase(api):
    agent = api.make_agent(password="velvet harbor quietly 42")
    assert agent.id


@pytest.mark.parametrize(
    "password",
    [
        "alice.wonderland",  # the login
        "Alice.Wonderland2024!",  # login with digits and punctuation
        "alice.wonderland@example.com",
        "Mathilda Mathilda",  # first name repeated
        "liddell-liddell-1865",  # last name with digits
    ],
)
def test_policy_rejects_own_login_name_email(api, password):
    with pytest.raises(InvalidPassword, match="login, name or email"):
        api.make_agent(
            login="alice.wonderland",
            first_name="Mathilda",
            last_name="Liddell",
            password=password,
        )


def test_policy_accepts_name_inside_other_words(api):
    agent = api.make_agent(
        login="ann", first_name="Ann", password="Banner planning 2024"
    )
    assert agent.id


def test_change_rejects_current_password(api):
    agent = api.make_agent()
    response = change(api, agent, GOOD)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_password"
    assert "used this password recently" in response.json["message"]


def test_change_rejects_last_five_passwords(api):
    agent = api.make_agent()
    history = [GOOD] + [f"rotating secret number {i}" for i in range(1, 6)]
    for previous, new in zip(history, history[1:], strict=False):
        assert change(api, agent, new, previous).status_code == 200
    current = history[-1]

    # The current password and the five before it are all rejected.
    for old in history:
        response = change(api, agent, old, current)
        assert response.status_code == 400, old
        assert "recently" in response.json["message"]

    # One more change pushes the first password out of the history.
    assert change(api, agent, "rotating secret number 6", current).status_code == 200
    assert change(api, agent, GOOD, "rotating secret number 6").status_code == 200


def test_change_rejects_mismatched_confirmation(api):
    agent = api.make_agent()
    response = api.post(
        f"/v1/agents/{agent.id}/password",
        {
            "new_password": "brand new secret one",
            "new_password_confirm": "brand new secret two",
        },
    )
    assert response.status_code == 400
    assert "do not match" in response.json["message"]


def test_nfc_and_nfd_passwords_both_log_in(api):
    composed = unicodedata.normalize("NFC", "Pässwörd Pässwörd")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    agent = api.make_agent(password=decomposed)
    assert api.login(agent.login, composed).status_code == 200
    assert api.login(agent.login, decomposed).status_code == 200


def test_spaces_kept_at_creation(api):
    agent = api.make_agent(password="  spaced secret phrase  ")
    assert api.login(agent.login, "  spaced secret phrase  ").status_code == 200
    assert api.login(agent.login, "spaced secret phrase").status_code == 401
    assert api.login(agent.login, "  spaced secret phrase").status_code == 401


def test_spaces_kept_at_initial_change(api):
    agent = api.make_agent()
    assert agent.must_change_password
    assert change(api, agent, " initial change padded ").status_code == 200
    assert api.login(agent.login, " initial change padded ").status_code == 200
    assert api.login(agent.login, "initial change padded").status_code == 401


def test_spaces_kept_at_preferences_change(api):
    agent = api.make_agent()
    assert change(api, agent, "first real password").status_code == 200
    response = change(api, agent, "   preferences padded   ", "first real password")
    assert response.status_code == 200
    assert api.login(agent.login, "   preferences padded   ").status_code == 200
    assert api.login(agent.login, "preferences padded").status_code == 401


def test_change_requires_current_after_initial(api):
    agent = api.make_agent()
    assert change(api, agent, "first real password").status_code == 200
    missing = change(api, agent, "second real password")
    assert missing.status_code == 403
    assert missing.json["error"] == "invalid_current_password"
    wrong = change(api, agent, "second real password", "not the password")
    assert wrong.status_code == 403


def test_rehash_on_login_after_parameter_change(make_app, make_api):
    old = make_app()
    agent = old.extensions["identity"].agents.create_agent(
        "rehash", "rehash@example.com", "Re", "Hash", GOOD
    )
    assert "$m=64,t=1,p=1$" in agent.password_hash

    # Same database, default (OWASP) parameters: m=19456 KiB, t=2, p=1.
    api = make_api(IDENTITY_ARGON2_MEMORY_KIB=19456, IDENTITY_ARGON2_TIME_COST=2)
    assert api.login("rehash", GOOD).status_code == 200
    stored = api.services.agents.repository.get(agent.id).password_hash
    assert "$m=19456,t=2,p=1$" in stored
    assert api.login("rehash", GOOD).status_code == 200


def test_hibp_rejects_breached_password(make_app, json_server):
    breached = "this one leaked somewhere"
    digest = hashlib.sha1(breached.encode(), usedforsecurity=False).hexdigest().upper()

    def respond(path):
        lines = ["0000000000000000000000000000000000A:0"]
        if path.endswith("/" + digest[:5]):
            lines.append(f"{digest[5:]}:42")
        return 200, "\r\n".join(lines), "text/plain"

    server = json_server(respond)
    app = make_app(
        GATEHOUSE_HIBP_ENABLED=True, GATEHOUSE_HIBP_URL=server.url + "/range/"
    )
    agents = app.extensions["identity"].agents
    with pytest.raises(InvalidPassword, match="data breaches"):
        agents.create_agent("leaky", "leaky@example.com", "Lea", "Ky", breached)
    assert server.paths == [f"/range/{digest[:5]}"]
    assert agents.create_agent("safe", "safe@example.com", "Sa", "Fe", GOOD).id


def test_hibp_fails_open_when_unreachable(make_app, closed_port):
    app = make_app(
        GATEHOUSE_HIBP_ENABLED=True,
        GATEHOUSE_HIBP_URL=f"http://127.0.0.1:{closed_port}/range/",
    )
    agent = app.extensions["identity"].agents.create_agent(
        "open", "open@example.com", "Op", "En", GOOD
    )
    assert agent.id


def test_policy_counts_space_runs_once(api):
    with pytest.raises(InvalidPassword, match="too short"):
        api.make_agent(password="x" + " " * 11)


def test_policy_keeps_spaces_of_accepted_password(api):
    password = "  two  spaced   words here  "

    agent = api.make_agent(password=password)

    assert api.login(agent.login, password).status_code == 200
    assert api.login(agent.login, password.strip()).status_code == 401


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaaaaaaaa",
        "abababababab",
        "abcdefghijklmno",
        "123456789012",
        "987654321098",
        "y" * 1024,
    ],
)
def test_policy_rejects_repetitive_passwords(api, password):
    with pytest.raises(InvalidPassword, match="too repetitive"):
        api.make_agent(password=password)


def test_each_hash_has_own_128_bit_salt():
    hasher = Argon2Hasher(memory_kib=8, time_cost=1, parallelism=1)

    hashes = [hasher.hash("the same password 1") for _ in range(20)]

    salts = [encoded.split("$")[4] for encoded in hashes]
    assert len(set(salts)) == 20
    for salt in salts:
        # argon2 encodes the salt in unpadded base64: 16 bytes are 22 characters.
        assert len(base64.b64decode(salt + "==")) == 16
