import pytest
from gatehouse.gateway.display import (
    browser_name,
    encryption_label,
    event_label,
    utc_time,
)
from gatehouse.gateway.flow import describe_wait

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
EDGE = CHROME + " Edg/131.0.0.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
    "Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    "header, expected",
    [
        (FIREFOX, "Firefox on Linux"),
        (CHROME, "Chrome on Windows"),
        (EDGE, "Edge on Windows"),
        (
            CHROME.replace("Windows NT 10.0; Win64; x64", "X11; Linux x86_64").replace(
                "Chrome/", "HeadlessChrome/"
            ),
            "Chrome on Linux",
        ),
        (SAFARI_IPHONE, "Safari on iOS"),
        ("python-requests/2.32", "python-requests/2.32"),
        ("", "unknown browser"),
    ],
)
def test_browser_name(header, expected):
    assert browser_name(header) == expected


def test_utc_time_reads_iso_and_unix_time():
    assert utc_time("2026-12-04T15:55:53.706Z") == "2026-12-04 15:55"
    assert utc_time(0) == ""
    assert utc_time(1_800_000_000) == "2027-01-15 08:00"


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (255, "4 minutes 15 seconds"),
        (900, "15 minutes"),
        (0, "1 second"),
    ],
)
def test_describe_wait(seconds, expected):
    assert describe_wait(seconds) == expected


def test_encryption_label():
    assert encryption_label("smime") == "S/MIME"
    assert encryption_label(None) == "no encryption"


def test_event_label_reads_as_words():
    assert event_label("new_browser_signin") == "Sign-in from a new browser"
    assert event_label("second_factor_replayed") == "A code was used twice"
    assert event_label("some_future_event") == "some future event"
