"""Signed service credentials for tests that call identity or OTP directly.

``ServiceAuth`` signs each request that ``requests`` sends. ``SigningMiddleware``
does the same for Flask test clients: a request whose ``Authorization`` header is
the placeholder ``Sign-As CALLER`` gets a real credential signed with CALLER's
key, computed from the method, path, query and body the app receives. Tests can
then pass fixed headers (as ``api.headers``) with any body, and the service still
verifies a real Ed25519 signature. A request without the placeholder goes through
unchanged, so tests of missing or wrong credentials see what they sent.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from urllib.parse import quote

import requests
from gatehouse.common.servicekeys import SigningKey, sign_request

PLACEHOLDER_SCHEME = "Sign-As"


def placeholder_headers(caller: str = "gateway") -> dict[str, str]:
    """Return headers that SigningMiddleware replaces with ``caller``'s credential."""
    return {"Authorization": f"{PLACEHOLDER_SCHEME} {caller}"}


class ServiceAuth(requests.auth.AuthBase):
    """Signs every request of a requests session as ``key.caller`` for ``audience``."""

    def __init__(self, key: SigningKey, audience: str) -> None:
        self.key = key
        self.audience = audience

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode()
        prepared.headers["Authorization"] = sign_request(
            self.key, self.audience, prepared.method, prepared.path_url, body
        )
        return prepared


class SigningMiddleware:
    """WSGI middleware that turns the ``Sign-As`` placeholder into a credential."""

    def __init__(self, app, audience: str, keys: Mapping[str, SigningKey]) -> None:
        self.app = app
        self.audience = audience
        self.keys = keys

    def __call__(self, environ, start_response):
        scheme, _, caller = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme == PLACEHOLDER_SCHEME:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            # PATH_INFO is already percent-decoded (as latin-1, PEP 3333), and
            # sign_request decodes once more, so quote it back first.
            path = environ.get("PATH_INFO", "").encode("latin-1").decode()
            target = quote(path)
            if environ.get("QUERY_STRING"):
                target += "?" + environ["QUERY_STRING"]
            environ["HTTP_AUTHORIZATION"] = sign_request(
                self.keys[caller],
                self.audience,
                environ["REQUEST_METHOD"],
                target,
                body,
            )
        return self.app(environ, start_response)


def install_signing(app, audience: str, keys: Mapping[str, SigningKey]):
    """Wrap ``app.wsgi_app`` in SigningMiddleware and return ``app``."""
    app.wsgi_app = SigningMiddleware(app.wsgi_app, audience, keys)
    return app
