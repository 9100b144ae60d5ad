"""Mail jobs built and published off the request path, with retries.

Identity hands reset requests and its own notices to one background thread per
process. The HTTP response to a reset request then costs the same whether or not
the login exists, and a broker outage delays a mail instead of failing the
request. A job that still fails after every retry is logged at ERROR with the
agent id.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence

from gatehouse.common.internal import ServiceClient, ServiceUnavailable
from gatehouse.common.logs import bind_request_id, current_request_id
from gatehouse.common.mail import MailJob, MailPublisher, PublishFailed

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_PENDING = 10000


class MailOutbox:
    def __init__(
        self,
        publisher: MailPublisher,
        otp_client: ServiceClient | None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self.publisher = publisher
        self._otp = otp_client
        self._retry_delays = tuple(retry_delays)
        # NOTE: the queue lives in process memory, so jobs still queued when a
        # worker process dies are lost; normal exit waits up to 5 s (atexit).
        self._queue: queue.Queue = queue.Queue(maxsize=MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        atexit.register(self.drain, 5.0)

    def _ensure_thread(self) -> None:
        # Started lazily and restarted after a fork: gunicorn may build the app
        # in the master, and threads do not survive fork().
        with self._lock:
            if (
                self._thread is not None
                and self._pid == os.getpid()
                and self._thread.is_alive()
            ):
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="identity-outbox", daemon=True
            )
            self._thread.start()

    def submit(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the outbox thread, with this request's id bound."""
        self._ensure_thread()
        try:
            self._queue.put_nowait((task, current_request_id()))
        except queue.Full:
            log.error("identity.outbox_full", extra={"pending": MAX_PENDING})

    def _run(self) -> None:
        while True:
            task, request_id = self._queue.get()
            bind_request_id(request_id)
            try:
                task()
            except Exception:
                log.exception("identity.outbox_task_failed")
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted task ran; return False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                log.warning(
                    "identity.outbox_not_drained",
                    extra={"pending": self._queue.unfinished_tasks},
                )
                return False
            time.sleep(0.02)
        return True

    def email_security(self, agent_id: int) -> bool:
        """Return the agent's "encrypt mail when a key exists" choice from OTP.

        When OTP is unreachable or returns no valid choice, the result is True
        (encrypt when a key exists), the safer of the two guesses.
        """
        if self._otp is None:
            return True
        try:
            response = self._otp.get(f"/v1/factors/{agent_id}")
        except ServiceUnavailable as error:
            log.warning(
                "identity.otp_unavailable",
                extra={"agent_id": agent_id, "error": str(error)},
            )
            return True
        value = response.body.get("email_security") if response.status == 200 else None
        if not isinstance(value, bool):
            log.warning(
                "identity.otp_factor_unknown",
                extra={"agent_id": agent_id, "status": response.status},
            )
            return True
        return value

    def publish_with_retries(self, job: MailJob) -> bool:
        """Publish ``job``, retrying on PublishFailed; return False after the last
        attempt failed (logged at ERROR with the agent id)."""
        for attempt, delay in enumerate((0.0, *self._retry_delays), start=1):
            if delay:
                time.sleep(delay)
            try:
                self.publisher.publish(job)
                return True
            except PublishFailed as error:
                log.warning(
                    "identity.mail_publish_retry",
                    extra={
                        "agent_id": job.agent_id,
                        "kind": job.kind,
                        "message_id": job.message_id,
                        "attempt": attempt,
                        "error": str(error),
                    },
                )
        log.error(
            "identity.mail_publish_failed",
            extra={
                "agent_id": job.agent_id,
                "kind": job.kind,
                "message_id": job.message_id,
            },
        )
        return False
