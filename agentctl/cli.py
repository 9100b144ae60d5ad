"""agentctl: the operator's command line for agents, keys and certificates.

It works on the same database, Redis and data folder as the running services,
read from the same environment variables (see docs/identity.md).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from collections.abc import Sequence

PROGRAM = "agentctl"
# The evidence text of reset-2fa is stored in one audit event.
MAX_EVIDENCE_LENGTH = 500


class CommandError(Exception):
    """A command failed; the message is printed as the one error line."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr."""

    def error(self, message: str):
        self.exit(2, f"{PROGRAM}: error: {message} (see {self.prog} --help)\n")


def _identity():
    from gatehouse.common.config import load_settings
    from gatehouse.identity.config import load_identity_config
    from gatehouse.identity.database import upgrade_database

    settings = load_settings()
    config = load_identity_config(settings.data_dir)
    # Idempotent, so a new database gets its tables and an existing one any
    # revision it lacks before agentctl touches it.
    upgrade_database(config.database_url)
    return settings, config


def _agent_service(redis_client=None):
    from gatehouse.identity.app import build_agent_service

    settings, config = _identity()
    return settings, build_agent_service(config, settings, redis_client)


def _find_agent(service, login: str):
    agent = service.repository.find_by_login(login)
    if agent is None:
        raise CommandError(f"no agent has the login {login!r}")
    return agent


def generate_password() -> str:
    """Return a 20-character URL-safe password (120 random bits)."""
    return secrets.token_urlsafe(15)


def command_agent_add(args: argparse.Namespace) -> None:
    from gatehouse.identity.interfaces import IdentityError

    if args.password_stdin:
        # Only the line break that ends the line is removed; spaces stay.
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = args.password
    generated = password is None
    if generated:
        password = generate_password()

    _, service = _agent_service()
    try:
        agent = service.create_agent(
            args.login, args.email, args.first_name, args.last_name, password
        )
    except IdentityError as error:
        raise CommandError(str(error)) from error

    print(f"created agent {agent.login!r} with id {agent.id}")
    if agent.must_change_password:
        print("the agent must change the password at the first login")
    _print_expiry(agent)
    if generated:
        print("initial password (shown once, on the next line):")
        print(password)


def command_agent_list(args: argparse.Namespace) -> None:
    _, service = _agent_service()
    agents = service.repository.list()
    if not agents:
        from sqlalchemy.engine import make_url

        # An empty list often means another data folder or database than the
        # running services use, so name it (without the password).
        database = make_url(service.config.database_url).render_as_string(
            hide_password=True
        )
        print(f"no agents in {database}")
        return
    print(f"{'id':>5}  {'login':<20} {'email':<32} name")
    for agent in agents:
        flag = "  (must change password)" if agent.must_change_password else ""
        print(
            f"{agent.id:>5}  {agent.login:<20} {agent.email:<32} "
            f"{agent.first_name} {agent.last_name}{flag}"
        )


def command_agent_unlock(args: argparse.Namespace) -> None:
    from gatehouse.common.ratelimit import FailureThrottle
    from gatehouse.common.redis_store import connect
    from gatehouse.identity.throttling import (
        LOGIN_THROTTLE_PREFIX,
        RESET_THROTTLE_PREFIX,
        login_throttle_key,
    )

    settings, service = _agent_service()
    agent = _find_agent(service, args.login)
    client = connect(settings.redis_url)
    removed = 0
    for prefix in (LOGIN_THROTTLE_PREFIX, RESET_THROTTLE_PREFIX):
        throttle = FailureThrottle(client, settings.redis_prefix + prefix)
        removed += throttle.clear([login_throttle_key(agent.login)])
    from gatehouse.otp.admin import clear_throttle

    removed += clear_throttle(agent.id)
    # NOTE: per-IP and global windows are shared with other agents and stay.
    print(f"unlocked agent {agent.login!r} ({removed} throttle window(s) cleared)")


def _print_expiry(agent) -> None:
    expires_at = agent.initial_password_expires_at
    if expires_at is not None:
        print(
            f"the initial password expires at {expires_at:%Y-%m-%d %H:%M} UTC; "
            "after that the agent needs a reset link or a new initial password"
        )


def checked_evidence(text: str) -> str:
    """Return the identity-proofing evidence, stripped; raise CommandError when
    it is empty, too long or contains control characters."""
    import unicodedata

    evidence = " ".join(text.split())
    if not evidence:
        raise CommandError(
            "--evidence is empty: describe how you verified the agent's identity, "
            'e.g. --evidence "ticket 4411, video call, badge shown"'
        )
    if len(evidence) > MAX_EVIDENCE_LENGTH:
        raise CommandError(
            f"--evidence is longer than {MAX_EVIDENCE_LENGTH} characters; "
            "name the ticket and summarise the checks"
        )
    if any(unicodedata.category(char) == "Cc" for char in evidence):
        raise CommandError("--evidence contains control characters")
    # Bytes that are not UTF-8 reach argv as lone surrogates (surrogateescape).
    if any(unicodedata.category(char) == "Cs" for char in evidence):
        raise CommandError("--evidence is not valid UTF-8; type it again as text")
    return evidence


def command_agent_reset_2fa(args: argparse.Namespace) -> None:
    evidence = None if args.evidence is None else checked_evidence(args.evidence)
    _, service = _agent_service()
    if service.config.reset_2fa_requires_proofing:
        _require_proofing(evidence, args.new_password)
    agent = _find_agent(service, args.login)
    try:
        from gatehouse.otp.admin import reset_factor
    except ImportError as error:
        raise CommandError(f"the OTP package is not installed: {error}") from error

    # With --new-password the reset repeats the enrollment ceremony, which hands
    # over a generated initial password. The password is replaced before the
    # factor goes, so at no moment does the old password alone open the account.
    password = generate_password() if args.new_password else None
    if password is not None:
        agent = _issue_initial_password(service, agent, password)
    try:
        removed = reset_factor(agent.id)
    except Exception as error:
        retry = "again, which issues another initial password" if password else "again"
        replaced = "the password was replaced, but " if password else ""
        raise CommandError(
            f"{replaced}removing the second factor of {agent.login!r} failed "
            f"({_describe(error)}); fix the cause and run reset-2fa {retry}"
        ) from error
    # The factor is usually removed because a phone was lost or stolen, so a
    # session that passed the old factor must not outlive it.
    ended = _end_sessions(agent.id)
    _record_operator_event(
        agent.id,
        "second_factor_reset_by_operator",
        {
            "evidence": evidence,
            "factor_removed": removed,
            "password_replaced": password is not None,
            "sessions_ended": ended,
        },
    )
    notice = "factor_removed" if removed or password is None else "password_changed"
    _queue_notice(service, agent, notice)

    if removed:
        print(f"removed the second factor of {agent.login!r}")
    else:
        print(f"agent {agent.login!r} had no second factor; nothing to remove")
    if password is None:
        print(f"ended {ended} session(s)")
        print("the agent sets up a second factor at the next login")
        return
    print(f"ended {ended} session(s) and replaced the password")
    print(
        "the agent must change the password at the next login and then sets up "
        "a second factor"
    )
    _print_expiry(agent)
    print("initial password (shown once, on the next line):")
    print(password)


def _require_proofing(evidence: str | None, new_password: bool) -> None:
    missing = []
    if evidence is None:
        missing.append('--evidence "TEXT"')
    if not new_password:
        missing.append("--new-password")
    if missing:
        raise CommandError(
            "IDENTITY_RESET_2FA_REQUIRES_PROOFING is on: verify the agent's "
            f"identity as at enrollment and add {' and '.join(missing)}"
        )


def _issue_initial_password(service, agent, password: str):
    from gatehouse.identity.interfaces import IdentityError

    try:
        return service.issue_initial_password(agent, password)
    except IdentityError as error:
        raise CommandError(str(error)) from error


def _queue_notice(service, agent, event: str) -> None:
    """Write the notice into identity's mail outbox; a running identity
    process relays it to the mail queue."""
    from gatehouse.identity.outbox import SqlMailOutbox

    SqlMailOutbox(service.repository.session_factory).add_notice(
        agent.id, {"event": event}
    )


def _end_sessions(agent_id: int) -> int:
    from gatehouse.common.config import load_settings
    from gatehouse.common.redis_store import connect
    from gatehouse.gateway.sessions import RedisSessionStore

    settings = load_settings()
    store = RedisSessionStore(
        connect(settings.redis_url), settings.redis_prefix + "gw:", 1, 1
    )
    return store.end_all(agent_id)


def _record_operator_event(agent_id: int, event: str, detail: dict) -> None:
    from gatehouse.identity.audit import SqlAuditLog
    from gatehouse.identity.database import (
        create_database_engine,
        create_session_factory,
    )

    settings, config = _identity()
    sessions = create_session_factory(create_database_engine(config.database_url))
    SqlAuditLog(sessions, settings.log_hash_key).record(
        event, agent_id, None, "agentctl", detail
    )


def _import_key(
    module_name: str, function_name: str, path: str, description: str
) -> None:
    import importlib

    try:
        keystore = importlib.import_module(module_name)
    except ImportError as error:
        raise CommandError(f"the mailer package is not installed: {error}") from error
    importer = getattr(keystore, function_name)
    key_error = getattr(keystore, "KeyImportError", ())
    try:
        result = importer(path)
    except key_error as error:
        raise CommandError(
            f"{description} import from {path} failed: {error}"
        ) from error
    print(f"imported {description}: {result}")


def command_pgp_import(args: argparse.Namespace) -> None:
    _import_key(
        "gatehouse.mailer.keystore", "import_pgp_key", args.file, "PGP public key"
    )


def command_smime_import(args: argparse.Namespace) -> None:
    _import_key(
        "gatehouse.mailer.keystore",
        "import_smime_certificate",
        args.file,
        "S/MIME certificate",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROGRAM,
        description="Manage gatehouse agents, PGP keys and S/MIME certificates. "
        "Settings come from the same environment variables as the services "
        "(GATEHOUSE_DATA_DIR, IDENTITY_DATABASE_URL, REDIS_URL, ...).",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print log lines (INFO and above) on stderr",
    )
    groups = parser.add_subparsers(
        dest="group", required=True, metavar="GROUP", parser_class=OneLineParser
    )

    agent = groups.add_parser("agent", help="create, list, unlock agents; reset 2FA")
    agent_commands = agent.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )

    add = agent_commands.add_parser(
        "add",
        help="create an agent",
        description="Create an agent. Without --password a random password is "
        "generated and printed alone on the last line of the output.",
    )
    add.add_argument(
        "login", metavar="LOGIN", help="login name, unique regardless of case"
    )
    add.add_argument(
        "--email",
        required=True,
        metavar="ADDR",
        help="email address for reset links, tokens and notices",
    )
    add.add_argument("--first-name", required=True, metavar="NAME")
    add.add_argument("--last-name", required=True, metavar="NAME")
    source = add.add_mutually_exclusive_group()
    source.add_argument(
        "--password",
        metavar="PW",
        help="initial password, used exactly as given (spaces "
        "included); it must pass the password policy. Other users "
        "can see command lines, so prefer --password-stdin",
    )
    source.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the initial password from the first line of standard input",
    )
    add.set_defaults(handler=command_agent_add)

    listing = agent_commands.add_parser("list", help="list every agent")
    listing.set_defaults(handler=command_agent_list)

    unlock = agent_commands.add_parser(
        "unlock",
        help="lift a lockout after failed logins",
        description="Clear the failed-login, reset-request and second-factor "
        "throttles of one agent. Per-address and service-wide throttles are left "
        "alone.",
    )
    unlock.add_argument("login", metavar="LOGIN")
    unlock.set_defaults(handler=command_agent_unlock)

    reset_2fa = agent_commands.add_parser(
        "reset-2fa",
        help="remove the agent's second factor",
        description="Remove the second factor, recovery codes and remembered "
        "devices of one agent and end their sessions, so the next login sets up "
        "a new factor. With --new-password the password is replaced too, by a "
        "generated initial password printed alone on the last line, which the "
        "agent changes at the next login before setting up the factor. With "
        "IDENTITY_RESET_2FA_REQUIRES_PROOFING on, --evidence and --new-password "
        "are required.",
    )
    reset_2fa.add_argument("login", metavar="LOGIN")
    reset_2fa.add_argument(
        "--evidence",
        metavar="TEXT",
        help="what you checked to verify the agent's identity, stored in the "
        f'audit log (e.g. "ticket 4411, video call, badge shown"; at most '
        f"{MAX_EVIDENCE_LENGTH} characters)",
    )
    reset_2fa.add_argument(
        "--new-password",
        action="store_true",
        help="also replace the password with a generated initial password, so "
        "knowing the old password is not enough to enroll a new factor",
    )
    reset_2fa.set_defaults(handler=command_agent_reset_2fa)

    pgp = groups.add_parser("pgp", help="manage PGP public keys")
    pgp_commands = pgp.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    pgp_import = pgp_commands.add_parser(
        "import", help="import an ASCII-armoured PGP public key"
    )
    pgp_import.add_argument("file", metavar="FILE")
    pgp_import.set_defaults(handler=command_pgp_import)

    smime = groups.add_parser("smime", help="manage S/MIME certificates")
    smime_commands = smime.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    smime_import = smime_commands.add_parser(
        "import", help="import a PEM X.509 certificate"
    )
    smime_import.add_argument("file", metavar="FILE")
    smime_import.set_defaults(handler=command_smime_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL + 1,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.handler(args)
    except CommandError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as error:  # noqa: BLE001 - one line instead of a traceback
        if args.verbose:
            logging.getLogger(PROGRAM).exception("agentctl.failed")
        return _fail(_describe(error))
    return 0


def _describe(error: Exception) -> str:
    from gatehouse.common.config import ConfigError

    if isinstance(error, ConfigError):
        return f"invalid configuration: {error}"
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text[:300]} (rerun with --verbose for details)"


def _fail(message: str, status: int = 1) -> int:
    print(f"{PROGRAM}: error: {' '.join(message.split())}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
