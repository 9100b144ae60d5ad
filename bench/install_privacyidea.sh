#!/usr/bin/env bash
# Installs privacyIDEA from PyPI into bench/.privacyidea-venv, apart from the
# project's own .venv. Skips the install when the venv already contains the
# expected version, so running it twice costs nothing.
set -euo pipefail

PI_VERSION="${PI_VERSION:-3.14}"
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.privacyidea-venv"
PYTHON="${PI_PYTHON:-python3}"

installed_version() {
    "$VENV/bin/python" -c \
        'import importlib.metadata as m; print(m.version("privacyidea"))' \
        2>/dev/null || true
}

if [[ -x "$VENV/bin/python" && "$(installed_version)" == "$PI_VERSION" ]] \
    && [[ -x "$VENV/bin/gunicorn" ]]; then
    echo "privacyIDEA $PI_VERSION already installed in $VENV"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "privacyidea==$PI_VERSION" gunicorn
echo "privacyIDEA $(installed_version) installed in $VENV"
