"""Token mail latency and mailer throughput, plain, PGP and S/MIME.

A token mail starts with ``POST /v1/challenges`` on the OTP service, which queues a
mail job and returns. The mailer then consumes the job, renders, encrypts and
delivers the mail to the SMTP sink in this process. Latency runs from sending the
challenge request to the sink's accept of the DATA command. Keys and certificates
are made here and imported with ``agentctl``. The factors are enrolled through the
OTP service with the token read (and decrypted) from the enrollment mail.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import tempfile
import time
from email import message_from_bytes, policy
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from gatehouse.common.servicekeys import SigningKey

from .httpload import Connection, percentile
from .login_bench import Browser, csrf_token, expect_page, expect_redirect
from .otp_bench import CLIENT_IP, HOST, _ms, median_of, post_json
from .procstat import RoundMeter
from .smtp_sink import TOKEN_LINE, AcceptedMail, SmtpSink

VARIANTS = ("plain", "pgp", "smime")
MAIL_TIMEOUT = 30.0


def make_pgp_keys(addresses: list[str], home: Path) -> list[Path]:
    """Generate an ed25519/cv25519 key per address; return the exported files."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    files = []
    for address in addresses:
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                f"Bench <{address}>",
                "future-default",
                "default",
                "never",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        path = home / f"{address}.asc"
        exported = subprocess.run(
            ["gpg", "--batch", "--armor", "--export", address],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        path.write_bytes(exported.stdout)
        files.append(path)
    return files


def make_smime_certificates(addresses: list[str], folder: Path) -> dict:
    """Create a self-signed RSA-2048 certificate per address.

    Return {address: (certificate, private key, PEM path)}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    now = datetime.datetime.now(datetime.UTC)
    for address in addresses:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        path = folder / f"{address}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        made[address] = (certificate, key, path)
    return made


def decrypted_token(
    mail: AcceptedMail, variant: str, gnupg_home: Path, smime_keys: dict
) -> str | None:
    """Return the token of a token mail, decrypting it first when encrypted."""
    if variant not in ("pgp", "smime"):
        return mail.plain_token()
    if variant == "pgp":
        message = message_from_bytes(mail.content, policy=policy.default)
        armored = next(
            part.get_content()
            for part in message.iter_parts()
            if part.get_content_type() == "application/octet-stream"
        )
        if isinstance(armored, str):
            armored = armored.encode()
        completed = subprocess.run(
            [
                "gpg",
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--decrypt",
            ],
            input=armored,
            capture_output=True,
            timeout=60,
            env={**os.environ, "GNUPGHOME": str(gnupg_home)},
            check=True,
        )
        inner = completed.stdout
    else:
        certificate, key, _path = smime_keys[mail.recipients[0]]
        inner = pkcs7.pkcs7_decrypt_smime(mail.content, certificate, key, [])
    inner_message = message_from_bytes(inner, policy=policy.default)
    part = inner_message.get_body(preferencelist=("plain",))
    text = part.get_content().encode() if part is not None else inner
    match = TOKEN_LINE.search(text)
    return match.group(1).decode() if match else None


class MailBench:
    def __init__(
        self,
        otp_port: int,
        signing_key: SigningKey,
        sink: SmtpSink,
        meter: RoundMeter,
        work_dir: Path,
    ) -> None:
        self.otp_port = otp_port
        self.signing_key = signing_key
        self.sink = sink
        self.meter = meter
        self.work_dir = work_dir
        self.gnupg_home = Path(tempfile.mkdtemp(prefix="gnupg-", dir=work_dir))
        self.smime_keys: dict = {}
        self.agents: dict[str, list[tuple[int, str]]] = {}

    def prepare_keys(self, agents: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
        """Make the keys; return the agentctl commands that import them."""
        self.agents = agents
        pgp_files = make_pgp_keys(
            [address for _, address in agents["pgp"]], self.gnupg_home
        )
        self.smime_keys = make_smime_certificates(
            [address for _, address in agents["smime"]], self.work_dir / "smime-made"
        )
        commands = [["pgp", "import", str(path)] for path in pgp_files]
        commands += [
            ["smime", "import", str(path)] for _, _, path in self.smime_keys.values()
        ]
        return commands

    async def enroll(self) -> None:
        """Enroll an email factor per agent, confirming with the mailed token."""
        connection = Connection(HOST, self.otp_port)
        for variant, agents in self.agents.items():
            for agent_id, address in agents:
                before = len(self.sink.mails_for(address))
                status, body = await post_json(
                    connection,
                    "/v1/enrollments/email",
                    self.signing_key,
                    {
                        "agent_id": agent_id,
                        "email": address,
                        "first_name": "Bench",
                        "email_security": variant in ("pgp", "smime"),
                    },
                )
                if status != 202:
                    raise RuntimeError(
                        f"email enrollment of {agent_id}: {status} {body}"
                    )
                mails = await asyncio.to_thread(
                    self.sink.wait_for_count, address, before + 1, MAIL_TIMEOUT
                )
                token = decrypted_token(
                    mails[-1], variant, self.gnupg_home, self.smime_keys
                )
                status, body = await post_json(
                    connection,
                    "/v1/enrollments/email/confirm",
                    self.signing_key,
                    {"agent_id": agent_id, "token": token, "client_ip": CLIENT_IP},
                )
                if status != 200:
                    raise RuntimeError(
                        f"email confirm of {agent_id} ({variant}): {status} {body}"
                    )
        connection.close()

    async def _challenge(
        self, connection: Connection, agent_id: int, address: str
    ) -> tuple[float, float]:
        """Send one challenge; return (send time, response time) in perf_counter."""
        sent = time.perf_counter()
        status, body = await post_json(
            connection,
            "/v1/challenges",
            self.signing_key,
            {
                "agent_id": agent_id,
                "email": address,
                "first_name": "Bench",
                "client_ip": CLIENT_IP,
            },
        )
        answered = time.perf_counter()
        if status != 202:
            raise RuntimeError(f"challenge for {agent_id}: {status} {body}")
        return sent, answered

    async def latency_round(self, variant: str, count: int) -> dict:
        """Send ``count`` challenges one after another, each after the last mail."""
        connection = Connection(HOST, self.otp_port)
        agents = self.agents[variant]
        latencies, request_latencies, content_types = [], [], set()
        self.meter.start()
        started = time.perf_counter()
        for index in range(count):
            agent_id, address = agents[index % len(agents)]
            before = len(self.sink.mails_for(address))
            sent, answered = await self._challenge(connection, agent_id, address)
            mails = await asyncio.to_thread(
                self.sink.wait_for_count, address, before + 1, MAIL_TIMEOUT
            )
            latencies.append(mails[-1].accepted_at - sent)
            request_latencies.append(answered - sent)
            content_types.add(mails[-1].content_type)

        wall = time.perf_counter() - started
        figures = self.meter.stop()
        connection.close()

        mailer_cpu = figures["server_cpu_by_group"]["mailer"]
        return {
            "mails": count,
            "wall_seconds": round(wall, 3),
            "p50_ms": _ms(percentile(latencies, 0.5)),
            "p95_ms": _ms(percentile(latencies, 0.95)),
            "max_ms": _ms(max(latencies)),
            "request_p50_ms": _ms(percentile(request_latencies, 0.5)),
            "request_p95_ms": _ms(percentile(request_latencies, 0.95)),
            "mailer_cpu_ms_per_mail": round(1000 * mailer_cpu / count, 2),
            "otp_cpu_ms_per_mail": round(
                1000 * figures["server_cpu_by_group"]["otp"] / count, 2
            ),
            "content_types": sorted(content_types),
        }

    async def throughput_round(self, count: int, concurrency: int = 8) -> dict:
        """Queue ``count`` plain token mails at once; time until the last accept."""
        agents = self.agents["plain"]
        total_before = self.sink.count
        self.meter.start()
        started = time.perf_counter()

        async def sender(worker: int) -> None:
            connection = Connection(HOST, self.otp_port)
            for index in range(worker, count, concurrency):
                agent_id, address = agents[index % len(agents)]
                await self._challenge(connection, agent_id, address)
            connection.close()

        await asyncio.gather(*(sender(worker) for worker in range(concurrency)))
        queued = time.perf_counter()
        delivered = await asyncio.to_thread(
            self.sink.wait_for_total, total_before + count, 120
        )
        finished = time.perf_counter()
        figures = self.meter.stop()
        return {
            "mails": count,
            "all_delivered": delivered,
            "queue_seconds": round(queued - started, 3),
            "seconds_to_last_accept": round(finished - started, 3),
            "mails_per_second": round(count / (finished - started), 2),
            "mailer_cpu_ms_per_mail": round(
                1000 * figures["server_cpu_by_group"]["mailer"] / count, 2
            ),
            "mailer_cpu_share_of_one_core": round(
                figures["server_cpu_by_group"]["mailer"] / (finished - started), 3
            ),
        }

    async def slow_smtp_round(self, count: int, delay: float) -> dict:
        """Time challenge requests while the SMTP sink delays each accept."""
        connection = Connection(HOST, self.otp_port)
        agents = self.agents["plain"]
        total_before = self.sink.count
        self.sink.accept_delay = delay
        try:
            request_latencies = []
            for index in range(count):
                agent_id, address = agents[index % len(agents)]
                sent, answered = await self._challenge(connection, agent_id, address)
                request_latencies.append(answered - sent)
            await asyncio.to_thread(
                self.sink.wait_for_total, total_before + count, count * delay + 30
            )
        finally:
            self.sink.accept_delay = 0.0
            connection.close()
        return {
            "smtp_accept_delay_ms": delay * 1000,
            "challenges": count,
            "request_p50_ms": _ms(percentile(request_latencies, 0.5)),
            "request_max_ms": _ms(max(request_latencies)),
        }

    async def gateway_slow_smtp_round(
        self, gateway_port: int, logins: dict[int, tuple[str, str]], delay: float
    ) -> dict:
        """Time the gateway's password step for email-factor agents while the SMTP
        sink delays each accept ``delay`` s; the step queues the token mail."""
        total_before = self.sink.count
        self.sink.accept_delay = delay
        step_latencies = []
        try:
            for agent_id, _address in self.agents["gateway"]:
                login, password = logins[agent_id]
                browser = Browser(gateway_port)
                body = expect_page(await browser.get("/agent"), "login")
                started = time.perf_counter()
                response = await browser.post(
                    "/agent",
                    {
                        "csrf_token": csrf_token(body),
                        "login": login,
                        "password": password,
                    },
                )
                step_latencies.append(time.perf_counter() - started)
                expect_redirect(response, "/agent/2fa")
                browser.connection.close()

            count = len(step_latencies)
            await asyncio.to_thread(
                self.sink.wait_for_total, total_before + count, count * delay + 30
            )
        finally:
            self.sink.accept_delay = 0.0
        return {
            "smtp_accept_delay_ms": delay * 1000,
            "logins": len(step_latencies),
            "password_step_p50_ms": _ms(percentile(step_latencies, 0.5)),
            "password_step_max_ms": _ms(max(step_latencies)),
        }

    async def run(self, rounds: int, per_round: int, burst: int) -> dict:
        out: dict = {}
        await self.latency_round("plain", 3)  # warm-up
        for variant in VARIANTS:
            section = {
                "rounds": [
                    await self.latency_round(variant, per_round) for _ in range(rounds)
                ]
            }
            for key in ("p50_ms", "p95_ms", "request_p95_ms", "mailer_cpu_ms_per_mail"):
                section[f"median_{key}"] = median_of(section["rounds"], key)
            out[variant] = section
        out["throughput"] = await self.throughput_round(burst)
        out["slow_smtp"] = await self.slow_smtp_round(5, 1.0)
        return out
