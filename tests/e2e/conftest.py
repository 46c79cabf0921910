"""The widget in a real browser against real server processes.

- Debian's Chromium (/usr/bin/chromium), driven by Playwright; no browser is downloaded.
- Two `switchboard serve` processes sharing the test Redis, behind a TCP front door (like a
  Kubernetes Service) that sends each new connection to the first process that accepts it,
  so killing one moves the widget to the other.
- The model is an OpenAI-compatible HTTP server whose answers are scripted per question,
  streamed word by word, and that continues an unfinished answer from where it stopped (as
  vLLM does with `continue_final_message`). The real model path is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes import FakeSlack
from tests.openai_server import OpenAIServer, serve_openai
from tests.processes import ScriptedAnswers, ServerProcess, free_port
from tests.support import DEMO_ABSTENTION

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SWITCHBOARD_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
ADMIN_KEY = "e2e-admin-key"
SLACK_SECRET = "e2e-slack-signing-secret"
SUPPORT = "CSUPPORT"
IMAGE_HOST = "images.northwind.test"


class FrontDoor:
    """A TCP proxy on a free port: each connection goes to the first backend that accepts."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = free_port()
        self.connections: list[int] = []  # the backend port each connection went to
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FrontDoor:
        self._thread.start()
        self._ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.backends:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.connections.append(port)
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
            return
        writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class Deployment:
    """Two server processes behind a front door, a scripted model, one Redis key prefix."""

    model: ScriptedAnswers
    llm: OpenAIServer
    servers: list[ServerProcess]
    front: FrontDoor
    prefix: str
    host_page_port: int
    redis_url: str
    slack: FakeSlack  # the agents' console

    @property
    def url(self) -> str:
        return self.front.url

    def reset(self) -> None:
        """Both processes up again (a test may have killed one), the model's log cleared."""
        for server in self.servers:
            if not server.alive():
                server.start()
        for server in self.servers:
            server.wait_ready()
        self.model.prompts.clear()


SCRIPT = {
    "return an item": (
        "You have **30 days** from delivery to return an item. Start the return from your "
        "order page, print the label and drop the parcel at any carrier point. Items must be "
        "unused and in their original packaging; see the returns policy for details."
    ),
    "refund take": (
        "Refunds go back to your original payment method within 5 to 10 business days after "
        "we receive the return. We email you as soon as the refund is issued, and your bank "
        "may take a few more days to show it. If it has been longer than that, please reply "
        "here with your order number and we will check on it for you right away. Store "
        "credit refunds are instant once the return is scanned at our warehouse."
    ),
    "gift cards": (
        'Gift cards: <img src=x onerror="window.__xss=1;alert(1)"> '
        "[click here](javascript:window.__xss=2;alert(2)) and "
        f"![logo](https://evil.example/pixel.png) ![ok](https://{IMAGE_HOST}/card.png) "
        "<script>window.__xss=3</script> end."
    ),
}


def _policy_file(target: Path) -> Path:
    """The bundled policy, with links to the test's image and attack hosts allowed.

    The links stage would strip the foreign image itself; allowing it here lets the test
    check that the widget alone keeps it inert.
    """
    from policies.schema import default_policy_path

    data = yaml.safe_load(default_policy_path().read_text())
    data["links"]["allowed_domains"] = ["evil.example", IMAGE_HOST]
    # The scripted answers are not all from the help center (an XSS payload, on purpose):
    # the grounding check would drop them. It is tested in test_grounded_answers.py and
    # test_grounding_minilm.py; the widget is tested here.
    data["grounding"] = {"enabled": False}
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


# Module-scoped, not session: Playwright's sync API runs an event loop in this thread until
# it stops, which would break every asyncio test after it; and the servers go when done.
@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, demo_index: Path, redis_url: str
) -> Iterator[Deployment]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    model = ScriptedAnswers(SCRIPT)
    tmp = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e-{uuid.uuid4().hex[:8]}:"
    host_page_port = free_port()
    slack = FakeSlack()
    slack.start()
    with serve_openai(model, name="scripted") as llm:
        ports = [free_port(), free_port()]
        env = {
            **os.environ,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_KEY_PREFIX": prefix,
            "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
            "SWITCHBOARD_POLICY_FILE": str(_policy_file(tmp / "policy.yaml")),
            "SWITCHBOARD_LLM__ENGINE": "openai",
            "SWITCHBOARD_LLM__BASE_URL": llm.base_url,
            "SWITCHBOARD_LLM__MODEL": "scripted",
            "SWITCHBOARD_LLM__MAX_NEW_TOKENS": "256",
            # The scripted model's streamed answers (and their hostile markup) are what the
            # widget is tested on (quoted answers: tests/integration/knowledge/).
            "SWITCHBOARD_ANSWERS__MODE": "generate",
            "SWITCHBOARD_KNOWLEDGE__INDEX_DIR": str(demo_index),
            "SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR": str(ROOT / "demo" / "kb"),
            "SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL": str(DEMO_ABSTENTION),
            "SWITCHBOARD_SESSIONS__LOCK_TIMEOUT_S": "3",
            "SWITCHBOARD_WEB__STALL_S": "1",
            "SWITCHBOARD_WEB__SITES": json.dumps(
                {"demo": {}, "partner": {"origins": [f"http://127.0.0.1:{host_page_port}"]}}
            ),
            "SWITCHBOARD_WEB__IMAGE_DOMAINS": json.dumps([IMAGE_HOST]),
            "SWITCHBOARD_ADMIN_API_KEY": ADMIN_KEY,
            "SWITCHBOARD_SLACK__SIGNING_SECRET": SLACK_SECRET,
            "SWITCHBOARD_SLACK__BOT_TOKEN": "xoxb-e2e",
            "SWITCHBOARD_SLACK__API_URL": slack.url + "/api",
            "SWITCHBOARD_SLACK__SUPPORT_CHANNEL": SUPPORT,
            "SWITCHBOARD_LOG_LEVEL": "info",
            "HF_HUB_OFFLINE": "1",
            "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        }
        servers = [ServerProcess(env, port, tmp / f"server-{port}.log") for port in ports]
        for server in servers:
            server.start()
        front = FrontDoor(ports).start()
        try:
            for server in servers:
                server.wait_ready()
            yield Deployment(model, llm, servers, front, prefix, host_page_port, redis_url, slack)
        finally:
            front.stop()
            slack.stop()
            for server in servers:
                server.stop()
            for server in servers:  # what the processes said, for a failing run's report
                sys.stderr.write(f"--- {server.log_path.name} (tail)\n")
                sys.stderr.write(server.log_path.read_text()[-4000:])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, deployment: Deployment) -> Iterator[Any]:
    deployment.reset()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
