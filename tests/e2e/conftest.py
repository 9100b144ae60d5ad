import os
import shutil

import pytest
from support.smtp import SmtpSink
from support.stack import LocalStack

CHROMIUM = os.environ.get("GATEHOUSE_CHROMIUM", shutil.which("chromium") or "")


@pytest.fixture(scope="module")
def e2e_stack():
    sink = SmtpSink().start()
    stack = LocalStack(sink.port).start()
    yield stack
    stack.stop()
    sink.stop()


@pytest.fixture
def chromium():
    if not CHROMIUM:
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
