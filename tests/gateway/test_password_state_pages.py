"""Login pages for an expired initial password and a breached password, with fakes."""

import re

AGENT = {
    "id": 7,
    "login": "ann",
    "email": "ann@example.test",
    "first_name": "Ann",
    "last_name": "Smith",
    "must_change_password": True,
    "password_change_reason": "breached",
}


def _csrf(response) -> str:
    return re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"',
        response.get_data(as_text=True),
    ).group(1)


def _post_login(client):
    token = _csrf(client.get("/agent"))
    return client.post(
        "/agent", data={"login": "ann", "password": "pw", "csrf_token": token}
    )


def test_expired_initial_password_message(client, services):
    services["identity"].answer(
        "POST",
        "/v1/authenticate",
        403,
        {"error": "initial_password_expired", "message": "expired"},
    )

    response = _post_login(client)

    assert response.status_code == 403
    assert b'data-page="login"' in response.data
    assert b"Your initial password has expired." in response.data
    assert b"Set a new one with" in response.data
    assert b"ask an operator to issue a new one." in response.data


def test_breached_password_asks_second_factor_first(client, services):
    services["identity"].answer("POST", "/v1/authenticate", 200, {"agent": AGENT})
    services["otp"].answer(
        "GET", "/v1/factors/7", 200, {"method": "app", "email_security": False}
    )

    response = _post_login(client)

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/2fa")
    # Until the second factor passes, the password change page is out of reach.
    assert (
        client.get("/agent/password/change").headers["Location"].endswith("/agent/2fa")
    )


def test_initial_password_changed_first(client, services):
    agent = dict(AGENT, password_change_reason="initial")
    services["identity"].answer("POST", "/v1/authenticate", 200, {"agent": agent})

    response = _post_login(client)

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/password/change")
    page = client.get("/agent/password/change")
    assert b"replace the initial password you were given" in page.data
    assert b"data breaches" not in page.data
