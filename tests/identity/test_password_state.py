"""Checks after a correct password: initial-password expiry and breached passwords."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from gatehouse.identity.models import AgentRow, utcnow
from gatehouse.identity.passwords import common_passwords
from sqlalchemy import update

GOOD = "correct horse battery"
NEW = "a brand new passphrase 7"


def set_agent_columns(api, agent_id, **values):
    with api.services.agents.repository.session_factory.begin() as session:
        session.execute(
            update(AgentRow).where(AgentRow.id == agent_id).values(**values)
        )


def set_password(api, agent_id, password):
    """Store ``password`` without the policy, as if it was set before a list grew."""
    set_agent_columns(
        api, agent_id, password_hash=api.services.agents.hasher.hash(password)
    )


def common_password_of_min_length(length=12):
    return sorted(word for word in common_passwords() if len(word) >= length)[0]


def audit_events(api, agent_id):
    return [
        event["event"]
        for event in api.get(f"/v1/agents/{agent_id}/audit").json["events"]
    ]


def test_initial_password_gets_expiry(make_api):
    api = make_api(IDENTITY_INITIAL_PASSWORD_TTL=3600)
    before = utcnow()

    agent = api.make_agent()

    assert agent.password_change_reason == "initial"
    expires_at = agent.initial_password_expires_at
    assert before + timedelta(seconds=3590) < expires_at
    assert expires_at < before + timedelta(seconds=3610)


def test_initial_password_default_ttl_is_72_hours(api):
    assert api.services.agents.config.initial_password_ttl == 72 * 3600


def test_expired_initial_password_rejected(api):
    agent = api.make_agent()
    set_agent_columns(
        api, agent.id, initial_password_expires_at=utcnow() - timedelta(seconds=1)
    )

    response = api.login("alice", GOOD)

    assert response.status_code == 403
    assert response.json["error"] == "initial_password_expired"
    assert "ask an operator" in response.json["message"]
    assert "login_rejected" in audit_events(api, agent.id)
    assert "login_succeeded" not in audit_events(api, agent.id)


def test_expired_initial_wrong_password_generic(api):
    agent = api.make_agent()
    set_agent_columns(
        api, agent.id, initial_password_expires_at=utcnow() - timedelta(seconds=1)
    )

    wrong = api.login("alice", "wrong horse battery")
    unknown = api.login("nobody", "wrong horse battery")

    assert wrong.status_code == 401
    assert wrong.get_data() == unknown.get_data()


def test_unexpired_initial_password_signs_in(api):
    api.make_agent()
    response = api.login("alice", GOOD)
    assert response.status_code == 200
    assert response.json["agent"]["password_change_reason"] == "initial"


def test_changed_password_clears_expiry(api):
    agent = api.make_agent()
    api.post(
        f"/v1/agents/{agent.id}/password",
        {"new_password": NEW, "new_password_confirm": NEW},
    )

    stored = api.services.agents.repository.get(agent.id)

    assert stored.initial_password_expires_at is None
    assert stored.password_change_reason is None
    assert api.login("alice", NEW).status_code == 200


def test_no_expiry_when_change_not_required(make_api):
    api = make_api(GATEHOUSE_CHANGE_INITIAL_PASSWORD=False)
    agent = api.make_agent()
    assert agent.initial_password_expires_at is None
    assert agent.password_change_reason is None


def test_common_password_forces_change_at_login(make_api):
    api = make_api(GATEHOUSE_CHANGE_INITIAL_PASSWORD=False)
    agent = api.make_agent()
    common = common_password_of_min_length()
    set_password(api, agent.id, common)

    response = api.login("alice", common)

    assert response.status_code == 200
    assert response.json["agent"]["must_change_password"] is True
    assert response.json["agent"]["password_change_reason"] == "breached"
    stored = api.services.agents.repository.get(agent.id)
    assert stored.must_change_password is True


def test_guessable_password_forces_change_at_login(make_api):
    api = make_api(GATEHOUSE_CHANGE_INITIAL_PASSWORD=False)
    agent = api.make_agent()
    # Not on the list itself, but a word, digits and a symbol: zxcvbn rates it
    # below 10^8 guesses.
    set_password(api, agent.id, "Sunshine2019!")

    response = api.login("alice", "Sunshine2019!")

    assert response.status_code == 200
    assert response.json["agent"]["password_change_reason"] == "breached"


def test_breached_then_changed_clears_flag(make_api):
    api = make_api(GATEHOUSE_CHANGE_INITIAL_PASSWORD=False)
    agent = api.make_agent()
    common = common_password_of_min_length()
    set_password(api, agent.id, common)
    api.login("alice", common)

    # must_change_password lets the change go through without the current one.
    changed = api.post(
        f"/v1/agents/{agent.id}/password",
        {"new_password": NEW, "new_password_confirm": NEW},
    )

    assert changed.status_code == 200
    response = api.login("alice", NEW)
    assert response.json["agent"]["must_change_password"] is False
    assert response.json["agent"]["password_change_reason"] is None


def test_good_password_not_flagged(make_api):
    api = make_api(GATEHOUSE_CHANGE_INITIAL_PASSWORD=False)
    api.make_agent()
    response = api.login("alice", GOOD)
    assert response.json["agent"]["must_change_password"] is False
    assert response.json["agent"]["password_change_reason"] is None


def test_breached_initial_keeps_reason_and_expiry(api):
    agent = api.make_agent()
    common = common_password_of_min_length()
    set_password(api, agent.id, common)

    response = api.login("alice", common)

    assert response.json["agent"]["password_change_reason"] == "initial"
    stored = api.services.agents.repository.get(agent.id)
    assert stored.initial_password_expires_at == agent.initial_password_expires_at


def test_hibp_match_forces_change_at_login(make_api, json_server):
    leaked = "a leaked but long passphrase"
    digest = hashlib.sha1(leaked.encode(), usedforsecurity=False).hexdigest().upper()

    def respond(path):
        lines = ["0000000000000000000000000000000000A:0"]
        if path.endswith("/" + digest[:5]):
            lines.append(f"{digest[5:]}:3")
        return 200, "\r\n".join(lines), "text/plain"

    server = json_server(respond)
    api = make_api(
        GATEHOUSE_CHANGE_INITIAL_PASSWORD=False,
        GATEHOUSE_HIBP_ENABLED=True,
        GATEHOUSE_HIBP_URL=server.url + "/range/",
    )
    agent = api.make_agent()
    set_password(api, agent.id, leaked)

    response = api.login("alice", leaked)

    assert response.json["agent"]["password_change_reason"] == "breached"
    assert f"/range/{digest[:5]}" in server.paths


def test_hibp_down_at_login_fails_open(make_api, closed_port):
    api = make_api(
        GATEHOUSE_CHANGE_INITIAL_PASSWORD=False,
        GATEHOUSE_HIBP_ENABLED=True,
        GATEHOUSE_HIBP_URL=f"http://127.0.0.1:{closed_port}/range/",
    )
    api.make_agent()

    response = api.login("alice", GOOD)

    assert response.status_code == 200
    assert response.json["agent"]["must_change_password"] is False


def test_wrong_password_skips_breach_check(make_api, json_server):
    server = json_server(lambda path: (200, "", "text/plain"))
    api = make_api(
        GATEHOUSE_CHANGE_INITIAL_PASSWORD=False,
        GATEHOUSE_HIBP_ENABLED=True,
        GATEHOUSE_HIBP_URL=server.url + "/range/",
    )
    api.make_agent()
    server.paths.clear()

    assert api.login("alice", "wrong horse battery").status_code == 401
    assert server.paths == []
