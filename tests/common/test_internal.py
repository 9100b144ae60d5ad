"""ServiceClient and install_service_auth over real HTTP on loopback."""

import json
import logging
import socket
import threading
import uuid

import pytest
import redis
import urllib3
from flask import Flask, g, jsonify, request
from gatehouse.common.internal import (
    RedisNonceStore,
    RoutePolicy,
    ServiceClient,
    ServiceUnavailable,
    install_service_auth,
)
from gatehouse.common.servicekeys import (
    format_public_key,
    generate_signing_key,
    parse_public_keys,
    sign_request,
)
from werkzeug.serving import make_server

GATEWAY_KEY = generate_signing_key("gateway", "gw-1")
IDENTITY_KEY = generate_signing_key("identity", "id-1")
RING = parse_public_keys(
    f"{format_public_key(GATEWAY_KEY)},{format_public_key(IDENTITY_KEY)}"
)
# identity may read /shared; every other route keeps the gateway-only default.
POLICY = RoutePolicy(callers={"shared": {"gateway", "identity"}})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"test-internal-{uuid.uuid4().hex}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*", count=500):
        client.delete(key)
    client.close()


def _serve(app: Flask):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def service_url(redis_client):
    client, prefix = redis_client
    app = Flask("echo")
    install_service_auth(app, "echo", RING, POLICY, RedisNonceStore(client, prefix))

    @app.post("/echo")
    def echo():
        return jsonify(
            got=request.get_json(),
            request_id=request.headers.get("X-Request-ID"),
            caller=g.caller,
        )

    @app.get("/lookup/<path:address>")
    def lookup(address):
        return jsonify(address=address, limit=request.args.get("limit"))

    @app.get("/shared")
    def shared():
        return jsonify(caller=g.caller)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    server = _serve(app)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _raw_request(url: str, method: str, path: str, body: bytes, authorization: str):
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    return urllib3.request(method, url + path, body=body, headers=headers)


def test_call_sends_credential_and_json(service_url):
    client = ServiceClient("echo", [service_url], GATEWAY_KEY)

    answer = client.post("/echo", {"a": 1})

    assert answer.status == 200
    assert answer.body["got"] == {"a": 1}
    assert answer.body["caller"] == "gateway"
    assert len(answer.body["request_id"]) == 32


def test_query_and_encoded_path_verified(service_url):
    client = ServiceClient("echo", [service_url], GATEWAY_KEY)

    answer = client.get("/lookup/ann+x@example.test?limit=5")
    spaced = client.get("/lookup/a%20b@example.test")

    assert answer.status == 200
    assert answer.body == {"address": "ann+x@example.test", "limit": "5"}
    assert spaced.status == 200
    assert spaced.body["address"] == "a b@example.test"


def test_missing_credential_gets_401(service_url, caplog):
    caplog.set_level(logging.WARNING, logger="gatehouse.common.internal")

    answer = _raw_request(service_url, "POST", "/echo", b"{}", "")

    assert answer.status == 401
    assert answer.json()["error"] == "unauthenticated"
    assert [record.reason for record in caplog.records] == ["missing"]


def test_old_bearer_token_gets_401(service_url):
    answer = _raw_request(service_url, "POST", "/echo", b"{}", "Bearer " + "a" * 64)

    assert answer.status == 401
    assert answer.json()["error"] == "unauthenticated"


def test_unlisted_key_gets_401(service_url):
    client = ServiceClient("echo", [service_url], generate_signing_key("gateway"))

    answer = client.post("/echo", {})

    assert answer.status == 401
    assert answer.body["error"] == "unauthenticated"


def test_changed_body_gets_401(service_url, caplog):
    caplog.set_level(logging.WARNING, logger="gatehouse.common.internal")
    signed_body = json.dumps({"agent_id": 1}).encode()
    credential = sign_request(GATEWAY_KEY, "echo", "POST", "/echo", signed_body)

    answer = _raw_request(service_url, "POST", "/echo", b'{"agent_id": 2}', credential)

    assert answer.status == 401
    assert [record.reason for record in caplog.records] == ["bad_signature"]
    assert caplog.records[0].key_id == "gw-1"
    signature = credential.rsplit("sig=", 1)[1]
    assert signature not in caplog.text


def test_replayed_credential_gets_401(service_url, redis_client, caplog):
    caplog.set_level(logging.WARNING, logger="gatehouse.common.internal")
    credential = sign_request(GATEWAY_KEY, "echo", "POST", "/echo", b"{}")

    first = _raw_request(service_url, "POST", "/echo", b"{}", credential)
    again = _raw_request(service_url, "POST", "/echo", b"{}", credential)

    client, prefix = redis_client
    ttl = max(client.ttl(key) for key in client.scan_iter(match=prefix + "*"))
    assert first.status == 200
    assert again.status == 401
    assert again.json()["error"] == "unauthenticated"
    assert [record.reason for record in caplog.records] == ["replayed"]
    assert 0 < ttl <= RedisNonceStore.TTL_SECONDS


def test_nonce_store_down_gets_503(caplog):
    caplog.set_level(logging.ERROR, logger="gatehouse.common.internal")
    closed = redis.Redis(host="127.0.0.1", port=_free_port(), socket_timeout=2)
    app = Flask("echo")
    install_service_auth(app, "echo", RING, POLICY, RedisNonceStore(closed, "x:"))
    app.add_url_rule("/echo", "echo", lambda: {}, methods=["POST"])
    server = _serve(app)

    try:
        answer = ServiceClient(
            "echo", [f"http://127.0.0.1:{server.server_port}"], GATEWAY_KEY
        ).post("/echo", {})
    finally:
        server.shutdown()

    assert answer.status == 503
    assert answer.body["error"] == "unavailable"
    assert caplog.records[0].msg == "internal.nonce_store_unavailable"


def test_credential_for_other_service_gets_401(service_url):
    credential = sign_request(GATEWAY_KEY, "identity", "POST", "/echo", b"{}")

    answer = _raw_request(service_url, "POST", "/echo", b"{}", credential)

    assert answer.status == 401


def test_caller_not_allowed_gets_403(service_url, caplog):
    caplog.set_level(logging.WARNING, logger="gatehouse.common.internal")
    client = ServiceClient("echo", [service_url], IDENTITY_KEY)

    answer = client.post("/echo", {})

    assert answer.status == 403
    assert answer.body["error"] == "forbidden"
    assert [record.caller for record in caplog.records] == ["identity"]


def test_caller_allowed_on_listed_route(service_url):
    identity = ServiceClient("echo", [service_url], IDENTITY_KEY)
    gateway = ServiceClient("echo", [service_url], GATEWAY_KEY)

    assert identity.get("/shared").body == {"caller": "identity"}
    assert gateway.get("/shared").body == {"caller": "gateway"}


def test_unknown_route_needs_credential(service_url):
    identity = ServiceClient("echo", [service_url], IDENTITY_KEY)

    assert identity.get("/nowhere").status == 404
    assert _raw_request(service_url, "GET", "/nowhere", b"", "").status == 401


def test_health_probe_needs_no_credential(service_url):
    answer = _raw_request(service_url, "GET", "/healthz", b"", "")

    assert answer.status == 200


def test_unreachable_replica_skipped(service_url):
    down = f"http://127.0.0.1:{_free_port()}"
    client = ServiceClient("echo", [down, service_url], GATEWAY_KEY)

    answers = [client.post("/echo", {"n": n}).status for n in range(4)]

    assert answers == [200, 200, 200, 200]


def test_all_replicas_down_raises():
    client = ServiceClient("echo", [f"http://127.0.0.1:{_free_port()}"], GATEWAY_KEY)

    with pytest.raises(ServiceUnavailable, match="echo is unreachable"):
        client.get("/anything")
