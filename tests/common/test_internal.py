import socket
import threading

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from gatehouse.common.internal import (
    ServiceClient,
    ServiceUnavailable,
    install_service_auth,
)

TOKEN = "service-token-for-tests"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def service_url():
    app = Flask("echo")
    install_service_auth(app, TOKEN)

    @app.post("/echo")
    def echo():
        return jsonify(
            got=request.get_json(), request_id=request.headers.get("X-Request-ID")
        )

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_call_sends_credential_and_json(service_url):
    client = ServiceClient("echo", [service_url], TOKEN)

    answer = client.post("/echo", {"a": 1})

    assert answer.status == 200
    assert answer.body["got"] == {"a": 1}
    assert len(answer.body["request_id"]) == 32


def test_wrong_credential_gets_401(service_url):
    client = ServiceClient("echo", [service_url], "wrong")

    answer = client.post("/echo", {})

    assert answer.status == 401
    assert answer.body["error"] == "unauthenticated"


def test_unreachable_replica_skipped(service_url):
    down = f"http://127.0.0.1:{_free_port()}"
    client = ServiceClient("echo", [down, service_url], TOKEN)

    answers = [client.post("/echo", {"n": n}).status for n in range(4)]

    assert answers == [200, 200, 200, 200]


def test_all_replicas_down_raises():
    client = ServiceClient("echo", [f"http://127.0.0.1:{_free_port()}"], TOKEN)

    with pytest.raises(ServiceUnavailable, match="echo is unreachable"):
        client.get("/anything")
