"""Token mails encrypted end to end: keys imported with agentctl, mails decrypted
with the real gpg and openssl, and the token inside signs the agent in."""

import email
import email.policy

from support.crypto import GpgHome, make_certificate, openssl_decrypt
from support.flows import first_login
from support.web import TOKEN_PATTERN, Browser, is_token_mail


def _inner_token(inner: bytes) -> str:
    message = email.message_from_bytes(inner, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",)).get_content()
    tokens = TOKEN_PATTERN.findall(body)
    assert len(tokens) == 1, body
    return tokens[0]


def _encrypted_mails(smtp, address, count=1):
    """Wait for encrypted token mails; notices (also encrypted) have other subjects."""

    def encrypted(mail):
        return mail.message.get_content_type() in (
            "multipart/encrypted",
            "application/pkcs7-mime",
        ) and "sign-in code" in str(mail.message["Subject"])

    return smtp.wait_for(address, count=count, matching=encrypted)


def _pgp_token(mail, gpg: GpgHome) -> str:
    message = mail.message
    assert message.get_content_type() == "multipart/encrypted"
    assert message.get_param("protocol") == "application/pgp-encrypted"
    parts = list(message.iter_parts())
    assert parts[0].get_content_type() == "application/pgp-encrypted"
    armored = parts[1].get_payload(decode=True)
    return _inner_token(gpg.decrypt(armored))


def test_pgp_token_mail_signs_in(stack, smtp, make_agent, tmp_path):
    agent = make_agent()
    gpg = GpgHome(tmp_path / "gnupg")
    fingerprint = gpg.generate(f"Ann Agent <{agent.email.upper()}>")
    imported = stack.agentctl(
        "pgp", "import", str(gpg.export(fingerprint, tmp_path / "key.asc"))
    )
    assert imported.returncode == 0, imported.stderr
    browser = Browser(stack.url)
    first_login(browser, agent)

    setup = browser.get("/agent/2fa/setup")
    assert "encrypted with PGP" in setup.text
    page = browser.post("/agent/2fa/setup", {"method": "email", "email_security": "on"})
    assert page.name == "2fa-setup-email"
    mail = _encrypted_mails(smtp, agent.email)[-1]
    assert not is_token_mail(mail)
    page = browser.post("/agent/2fa/setup/email", {"token": _pgp_token(mail, gpg)})
    assert page.name == "dashboard"
    browser.post("/agent/logout", {})

    later = Browser(stack.url)
    assert later.login(agent.login, agent.password).name == "2fa-verify"
    login_mail = _encrypted_mails(smtp, agent.email, count=2)[-1]
    page = later.post("/agent/2fa", {"token": _pgp_token(login_mail, gpg)})
    assert page.name == "dashboard"
    security = later.get("/agent/preferences/security")
    assert "Code mails are encrypted with PGP" in security.text


def test_smime_token_mail_signs_in(stack, smtp, make_agent, tmp_path):
    agent = make_agent()
    certificate = make_certificate(tmp_path, "ann", san_address=agent.email)
    imported = stack.agentctl("smime", "import", str(certificate.certificate_path))
    assert imported.returncode == 0, imported.stderr
    browser = Browser(stack.url)
    first_login(browser, agent)

    assert "encrypted with S/MIME" in browser.get("/agent/2fa/setup").text
    browser.post("/agent/2fa/setup", {"method": "email", "email_security": "on"})
    mail = _encrypted_mails(smtp, agent.email)[-1]

    assert mail.message.get_content_type() == "application/pkcs7-mime"
    assert mail.message.get_param("smime-type") == "enveloped-data"
    token = _inner_token(openssl_decrypt(mail.raw, certificate, tmp_path))
    page = browser.post("/agent/2fa/setup/email", {"token": token})
    assert page.name == "dashboard"


def test_email_security_without_key_sends_plain(stack, smtp, make_agent):
    agent = make_agent()
    browser = Browser(stack.url)
    first_login(browser, agent)

    setup = browser.get("/agent/2fa/setup")
    assert "plain text" in setup.text
    page = browser.post("/agent/2fa/setup", {"method": "email", "email_security": "on"})

    assert "no key is on file" in page.text
    mail = smtp.wait_for(agent.email, matching=is_token_mail)[-1]
    assert mail.message.get_content_type() == "text/plain"
