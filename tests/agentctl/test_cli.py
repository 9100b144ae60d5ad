"""agentctl as an operator runs it: a subprocess on a temporary data folder."""

from __future__ import annotations

import redis
from argon2 import PasswordHasher
from gatehouse.common.ratelimit import FailureThrottle, Limit
from gatehouse.identity.throttling import LOGIN_THROTTLE_PREFIX, login_throttle_key

ADD = ("agent", "add")


def add_alice(agentctl, *extra, login="alice", email="alice@example.com", stdin=None):
    return agentctl(
        *ADD,
        login,
        "--email",
        email,
        "--first-name",
        "Alice",
        "--last-name",
        "Liddell",
        *extra,
        stdin=stdin,
    )


def stored_hash(cli_env, login):
    from sqlalchemy import create_engine, text

    engine = create_engine(
        f"sqlite:///{cli_env['GATEHOUSE_DATA_DIR']}/identity.sqlite3"
    )
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT password_hash, must_change_password FROM agents "
                "WHERE login_key = :key"
            ),
            {"key": login.lower()},
        ).one()
    engine.dispose()
    return row


def test_add_prints_generated_password_last(agentctl, cli_env):
    result = add_alice(agentctl)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    password = lines[-1]
    assert len(password) >= 16
    assert " " not in password
    password_hash, must_change = stored_hash(cli_env, "alice")
    assert PasswordHasher().verify(password_hash, password)
    assert must_change


def test_add_keeps_spaces_in_given_password(agentctl, cli_env):
    given_password = "  given with spaces  "
    result = add_alice(agentctl, "--password", given_password)
    assert result.returncode == 0, result.stderr
    assert given_password not in result.stdout
    password_hash, _ = stored_hash(cli_env, "alice")
    assert PasswordHasher().verify(password_hash, given_password)


def test_add_reads_password_from_stdin(agentctl, cli_env):
    result = add_alice(agentctl, "--password-stdin", stdin=" stdin secret phrase \n")
    assert result.returncode == 0, result.stderr
    password_hash, _ = stored_hash(cli_env, "alice")
    assert PasswordHasher().verify(password_hash, " stdin secret phrase ")


def test_add_honours_change_initial_password_off(agentctl, cli_env):
    cli_env["GATEHOUSE_CHANGE_INITIAL_PASSWORD"] = "off"
    assert add_alice(agentctl).returncode == 0
    _, must_change = stored_hash(cli_env, "alice")
    assert not must_change


def _assert_one_line_error(result, fragment):
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agentctl: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_add_duplicate_login_fails(agentctl):
    assert add_alice(agentctl).returncode == 0
    _assert_one_line_error(add_alice(agentctl, login="ALICE"), "already taken")


def test_add_malformed_email_fails(agentctl):
    for email in (
        "alice@@example.com",
        "alice example.com",
        "alice@",
        "al ice@example.com",
    ):
        _assert_one_line_error(add_alice(agentctl, email=email), "email address")


def test_add_weak_password_fails(agentctl):
    _assert_one_line_error(add_alice(agentctl, "--password", "short"), "too short")


def test_missing_argument_is_one_line(agentctl):
    _assert_one_line_error(agentctl(*ADD, "bob"), "required")


def test_unknown_login_errors(agentctl):
    for command in ("unlock", "reset-2fa"):
        _assert_one_line_error(agentctl("agent", command, "nobody"), "nobody")


def test_unlock_clears_throttle_keys(agentctl, cli_env):
    assert add_alice(agentctl).returncode == 0
    client = redis.Redis.from_url(cli_env["REDIS_URL"])
    throttle = FailureThrottle(
        client, cli_env["GATEHOUSE_REDIS_PREFIX"] + LOGIN_THROTTLE_PREFIX
    )
    limit = Limit("login", login_throttle_key("alice"), 2, 600)
    throttle.record_failure([limit])
    pattern = f"{cli_env['GATEHOUSE_REDIS_PREFIX']}{LOGIN_THROTTLE_PREFIX}*"
    assert list(client.scan_iter(match=pattern))

    result = agentctl("agent", "unlock", "ALICE")
    assert result.returncode == 0, result.stderr
    assert "unlocked" in result.stdout
    assert list(client.scan_iter(match=pattern)) == []
    client.close()


def test_list_shows_agents(agentctl):
    assert add_alice(agentctl).returncode == 0
    result = agentctl("agent", "list")
    assert result.returncode == 0
    assert "alice@example.com" in result.stdout


def test_help_describes_commands(agentctl):
    result = agentctl("--help")
    assert result.returncode == 0
    for word in ("agent", "pgp", "smime"):
        assert word in result.stdout
    add_help = agentctl(*ADD, "--help")
    assert "--password-stdin" in add_help.stdout
