"""Set up a privacyIDEA instance for the benchmark; run with its own venv's Python.

Usage: bench/.privacyidea-venv/bin/python bench/privacyidea_setup.py DATA_DIR USERS

Writes into DATA_DIR a config file (``pi.cfg``), an SQLite database, the encryption
key, the audit signing keys, a flat-file user list, and ``tokens.json`` mapping each
test user to the base32 secret of its TOTP token. It also creates a local admin, a
passwd-file resolver and the realm ``bench`` that the users log in to. The server is
then started by the harness as ``gunicorn`` with ``wsgi.py`` from the same folder.

This script imports privacyIDEA, so it must run under bench/.privacyidea-venv and
never under the project's .venv.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path

REALM = "bench"
RESOLVER = "benchusers"
ADMIN = "benchadmin"

CONFIG_TEMPLATE = """\
SQLALCHEMY_DATABASE_URI = {db_uri!r}
SECRET_KEY = {secret_key!r}
PI_PEPPER = {pepper!r}
PI_ENCFILE = {encfile!r}
PI_AUDIT_KEY_PRIVATE = {audit_private!r}
PI_AUDIT_KEY_PUBLIC = {audit_public!r}
PI_LOGFILE = {logfile!r}
PI_LOGLEVEL = 30
PI_NODE_UUID = {node_uuid!r}
PI_UUID_FILE = {uuid_file!r}
PI_AUDIT_SERVERNAME = "bench"
"""

WSGI_TEMPLATE = """\
from privacyidea.app import create_app

application = create_app(config_name="production", config_file={cfg!r}, silent=True)
"""


def write_config(data_dir: Path) -> Path:
    """Write pi.cfg, the encryption key and the audit keys unless they exist."""
    import uuid

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    cfg = data_dir / "pi.cfg"
    if cfg.exists():
        return cfg

    encfile = data_dir / "enckey"
    # privacyIDEA's default security module reads a 96-byte key file.
    encfile.write_bytes(secrets.token_bytes(96))

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    audit_private = data_dir / "audit-private.pem"
    audit_public = data_dir / "audit-public.pem"
    audit_private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    audit_public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )

    cfg.write_text(
        CONFIG_TEMPLATE.format(
            db_uri=f"sqlite:///{data_dir / 'privacyidea.sqlite'}",
            secret_key=secrets.token_urlsafe(32),
            pepper=secrets.token_urlsafe(16),
            encfile=str(encfile),
            audit_private=str(audit_private),
            audit_public=str(audit_public),
            logfile=str(data_dir / "privacyidea.log"),
            node_uuid=str(uuid.uuid4()),
            uuid_file=str(data_dir / "uuid.txt"),
        )
    )
    (data_dir / "wsgi.py").write_text(WSGI_TEMPLATE.format(cfg=str(cfg)))
    return cfg


def write_users(data_dir: Path, count: int) -> tuple[Path, list[str]]:
    """Write a passwd-style user file; the passwords are unused (OTP only)."""
    logins = [f"bench{index:05d}" for index in range(count)]
    lines = [
        f"{login}:x:{10000 + index}:10000:Bench User{index},,,,"
        f"{login}@bench.invalid:/nonexistent:/usr/sbin/nologin"
        for index, login in enumerate(logins)
    ]
    path = data_dir / "users.passwd"
    path.write_text("\n".join(lines) + "\n")
    return path, logins


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    data_dir = Path(sys.argv[1]).resolve()
    count = int(sys.argv[2])
    data_dir.mkdir(parents=True, exist_ok=True)
    tokens_path = data_dir / "tokens.json"
    if tokens_path.exists() and len(json.loads(tokens_path.read_text())) >= count:
        print(f"privacyIDEA data in {data_dir} already has {count} tokens")
        return 0

    cfg = write_config(data_dir)
    users_file, logins = write_users(data_dir, count)

    # Imported late: privacyIDEA reads its config at import of some modules.
    from privacyidea.app import create_app
    from privacyidea.lib.auth import create_db_admin
    from privacyidea.lib.realm import set_realm
    from privacyidea.lib.resolver import save_resolver
    from privacyidea.lib.token import init_token
    from privacyidea.lib.user import User
    from privacyidea.models import db

    os.environ.pop("PRIVACYIDEA_CONFIGFILE", None)
    app = create_app(config_name="production", config_file=str(cfg), silent=True)
    with app.app_context():
        db.create_all()
        db.session.commit()
        create_db_admin(
            ADMIN, email="admin@bench.invalid", password=secrets.token_urlsafe(16)
        )
        save_resolver(
            {
                "resolver": RESOLVER,
                "type": "passwdresolver",
                "fileName": str(users_file),
            }
        )
        set_realm(REALM, [{"name": RESOLVER}])

        tokens = {}
        for login in logins:
            secret = secrets.token_bytes(20)
            init_token(
                {
                    "type": "totp",
                    "otpkey": secret.hex(),
                    "genkey": 0,
                    "serial": f"TOTP_{login}",
                    "timeStep": 30,
                    "otplen": 6,
                    "hashlib": "sha1",
                },
                user=User(login, REALM),
            )
            tokens[login] = base64.b32encode(secret).decode()
    tokens_path.write_text(json.dumps(tokens))
    print(f"privacyIDEA set up in {data_dir}: realm {REALM}, {count} TOTP tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
