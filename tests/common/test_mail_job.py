import json

import pytest
from gatehouse.common.mail import InvalidMailJob, MailJob


def test_job_round_trips_through_json():
    job = MailJob(
        kind="token",
        to="ann@example.test",
        agent_id=3,
        first_name="Ann",
        params={"token": "012345", "ttl_seconds": 600, "purpose": "login"},
        email_security=True,
        expires_at=1.5,
    )

    copy = MailJob.from_json(job.to_json())

    assert copy == job


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "spam"}, "unknown kind"),
        ({"version": 99}, "unsupported version"),
        ({"to": None}, "field 'to'"),
        ({"agent_id": "3"}, "field 'agent_id'"),
    ],
)
def test_invalid_jobs_rejected(change, message):
    data = json.loads(
        MailJob(
            kind="notice",
            to="a@example.test",
            agent_id=3,
            first_name="A",
            params={"event": "x"},
        ).to_json()
    )
    data.update(change)

    with pytest.raises(InvalidMailJob, match=message):
        MailJob.from_json(json.dumps(data).encode())


def test_non_json_body_rejected():
    with pytest.raises(InvalidMailJob, match="not JSON"):
        MailJob.from_json(b"\xff\xfe")
