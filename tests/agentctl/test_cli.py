"""agentctl as an operator runs it: a subprocess on a temporary data folder."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from argon2 import PasswordHasher
from gatehouse.common.ratelimit import FailureThrottle, Limit
from gatehouse.identity.throttling import LOGIN_THROTTLE_PREFIX, login_throttle_key

ADD = ("agent", "add")
VENV_PYTHON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"


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
    _assert_one_line_error(agentctl("agent", "unlock", "nobody"), "nobody")
    _assert_one_line_error(
        agentctl("agent", "reset-2fa", "nobody", "--evidence", "ticket 1"), "nobody"
    )


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


def test_empty_list_names_database(agentctl, cli_env):
    result = agentctl("agent", "list")

    assert result.returncode == 0
    data_dir = cli_env["GATEHOUSE_DATA_DIR"]
    assert (
        result.stdout.strip() == f"no agents in sqlite:///{data_dir}/identity.sqlite3"
    )


def test_help_describes_commands(agentctl):
    result = agentctl("--help")
    assert result.returncode == 0
    for word in ("agent", "pgp", "smime"):
        assert word in result.stdout
    add_help = agentctl(*ADD, "--help")
    assert "--password-stdin" in add_help.stdout


def query_identity(cli_env, sql, **parameters):
    from sqlalchemy import create_engine, text

    engine = create_engine(
        f"sqlite:///{cli_env['GATEHOUSE_DATA_DIR']}/identity.sqlite3"
    )
    with engine.connect() as connection:
        rows = connection.execute(text(sql), parameters).all()
    engine.dispose()
    return rows


def test_add_sets_initial_password_expiry(agentctl, cli_env):
    cli_env["IDENTITY_INITIAL_PASSWORD_TTL"] = "3600"
    before = datetime.now(UTC).replace(tzinfo=None)
    result = add_alice(agentctl)
    assert result.returncode == 0, result.stderr

    assert "the initial password expires at" in result.stdout
    [(expires_at, reason)] = query_identity(
        cli_env,
        "SELECT initial_password_expires_at, password_change_reason FROM agents",
    )
    expires_at = datetime.fromisoformat(str(expires_at))
    assert reason == "initial"
    assert before + timedelta(seconds=3590) < expires_at
    assert expires_at < before + timedelta(seconds=3700)


def test_reset_2fa_rejects_bad_evidence(agentctl):
    assert add_alice(agentctl).returncode == 0

    for blank in ("", "   ", "\t \n"):
        result = agentctl("agent", "reset-2fa", "alice", "--evidence", blank)
        _assert_one_line_error(result, "--evidence is empty")
    too_long = agentctl("agent", "reset-2fa", "alice", "--evidence", "x" * 501)
    _assert_one_line_error(too_long, "longer than 500")


def test_reset_2fa_rejects_blank_evidence_before_change(agentctl, cli_env):
    assert add_alice(agentctl, "--password", "a given password 123").returncode == 0
    old_hash, _ = stored_hash(cli_env, "alice")

    agentctl("agent", "reset-2fa", "alice", "--evidence", "  ", "--new-password")

    assert stored_hash(cli_env, "alice")[0] == old_hash


def test_reset_2fa_strict_mode_requires_proofing(agentctl, cli_env):
    assert add_alice(agentctl, "--password", "a given password 123").returncode == 0
    old_hash, _ = stored_hash(cli_env, "alice")
    cli_env["IDENTITY_RESET_2FA_REQUIRES_PROOFING"] = "true"

    plain = agentctl("agent", "reset-2fa", "alice")
    _assert_one_line_error(plain, '--evidence "TEXT" and --new-password')
    no_password = agentctl("agent", "reset-2fa", "alice", "--evidence", "ticket 9")
    _assert_one_line_error(no_password, "add --new-password")
    assert stored_hash(cli_env, "alice")[0] == old_hash

    strict = agentctl(
        "agent", "reset-2fa", "alice", "--evidence", "ticket 9", "--new-password"
    )
    assert strict.returncode == 0, strict.stderr
    assert stored_hash(cli_env, "alice")[0] != old_hash


def migrate_databases(cli_env):
    """Upgrade both databases, as a deployment does before agentctl runs."""
    subprocess.run(
        [str(VENV_PYTHON), "-m", "gatehouse.common.stack", "migrate"],
        env=cli_env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_reset_2fa_issues_new_initial_password(agentctl, cli_env):
    migrate_databases(cli_env)
    old_password = "a given password 123"
    assert add_alice(agentctl, "--password", old_password).returncode == 0

    result = agentctl(
        "agent",
        "reset-2fa",
        "ALICE",
        "--evidence",
        " ticket 4411,  video call ",
        "--new-password",
    )

    assert result.returncode == 0, result.stderr
    new_password = result.stdout.splitlines()[-1]
    assert len(new_password) >= 16
    assert "initial password (shown once" in result.stdout
    password_hash, must_change = stored_hash(cli_env, "alice")
    assert PasswordHasher().verify(password_hash, new_password)
    assert must_change
    [(reason, expires_at)] = query_identity(
        cli_env,
        "SELECT password_change_reason, initial_password_expires_at FROM agents",
    )
    assert reason == "initial"
    assert expires_at is not None


def test_reset_2fa_audits_evidence_and_queues_notice(agentctl, cli_env):
    migrate_databases(cli_env)
    assert add_alice(agentctl).returncode == 0

    result = agentctl(
        "agent",
        "reset-2fa",
        "alice",
        "--evidence",
        "ticket 4411, badge shown",
        "--new-password",
    )

    assert result.returncode == 0, result.stderr
    [(event, detail)] = query_identity(
        cli_env,
        "SELECT event, detail FROM audit_events "
        "WHERE event = 'second_factor_reset_by_operator'",
    )
    detail = json.loads(detail)
    assert detail["evidence"] == "ticket 4411, badge shown"
    assert detail["password_replaced"] is True
    assert detail["factor_removed"] is False
    [(kind, payload)] = query_identity(cli_env, "SELECT kind, payload FROM mail_outbox")
    assert kind == "notice"
    assert json.loads(payload) == {"params": {"event": "password_changed"}}


def test_reset_2fa_plain_form_keeps_password(agentctl, cli_env):
    migrate_databases(cli_env)
    assert add_alice(agentctl, "--password", "a given password 123").returncode == 0
    old_hash, _ = stored_hash(cli_env, "alice")

    result = agentctl("agent", "reset-2fa", "alice")

    assert result.returncode == 0, result.stderr
    assert "sets up a second factor at the next login" in result.stdout
    assert stored_hash(cli_env, "alice")[0] == old_hash
    [(detail,)] = query_identity(
        cli_env,
        "SELECT detail FROM audit_events "
        "WHERE event = 'second_factor_reset_by_operator'",
    )
    detail = json.loads(detail)
    assert detail["evidence"] is None
    assert detail["password_replaced"] is False
    [(payload,)] = query_identity(cli_env, "SELECT payload FROM mail_outbox")
    assert json.loads(payload) == {"params": {"event": "factor_removed"}}


def test_reset_2fa_rejects_undecodable_evidence(agentctl, cli_env):
    assert add_alice(agentctl, "--password", "a given password 123").returncode == 0
    old_hash, _ = stored_hash(cli_env, "alice")
    # "\udcff" reaches the child as the byte 0xff, which is not UTF-8, and Python
    # decodes it back to a lone surrogate there.
    result = agentctl(
        "agent", "reset-2fa", "alice", "--evidence", "ticket \udcff", "--new-password"
    )

    _assert_one_line_error(result, "--evidence is not valid UTF-8")
    assert stored_hash(cli_env, "alice")[0] == old_hash
