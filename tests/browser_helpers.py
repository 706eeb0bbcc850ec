"""A real browser for the customer's pages under /shop/: Debian's Chromium driven by
Playwright (sync API), a `photogen serve` for it to talk to, axe-core for accessibility and
screenshots kept as test artifacts.

Playwright's own browser downloads are never used (`playwright install` is never run): the
browser is /usr/bin/chromium from Debian's package (`apt-get install chromium`; .ci/run
installs it). Without it the browser tests skip, and say why; on CI (CI set, as .ci/run
sets it) they fail instead, as the PostgreSQL tests do (tests/conftest.py postgres_server).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.servers import free_port

try:  # the dev extra installs it; without it the browser tests skip (or fail on CI), below
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover
    PlaywrightError, expect = Exception, None
from tests.test_serve import new_api_key, serving

REPO = Path(__file__).parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# no sandbox (CI runs as root in a container), and nothing that reaches out to the internet
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
DOCS_SHOP = REPO / "docs" / "shop"
# localstripe accepts any key; the webhook secret is the one serve and localstripe share
STRIPE_KEY, STRIPE_WEBHOOK_SECRET = "sk_test_photogen", "whsec_shop_browser"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def _unavailable(reason: str):
    """Skip with `reason`; on CI, fail: there the browser tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run; .ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, headless, one per test module (closed before the next module runs);
    each test opens its own context (browser.new_context)."""
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM}: `apt-get install chromium` to run the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}): pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


# -- photogen serve --------------------------------------------------------------------------


@dataclass
class ShopServer:
    """A running `photogen serve` (its API URL, home and log) and one shop's API key."""

    api: str
    home: Path
    log: Path
    auth: dict[str, str]
    stripe: object | None = None  # a localstripe client when payments are on

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.api + path, headers=self.auth, timeout=30, **kwargs)

    def order(self, order_id: str) -> dict:
        answer = self.call("GET", f"/v1/orders/{order_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def shop_session(self, **body) -> dict:
        """What a shop's backend does before it sends its customer to the pages."""
        answer = self.call("POST", "/v1/shop-sessions", json=body)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def pay(self, intent: str) -> None:
        """What Stripe.js does in the browser, server-side: a test card, straight to Stripe."""
        assert self.stripe is not None, "payments are off"
        method = self.stripe.v1.payment_methods.create(params={"type": "card", "card": CARD})
        self.stripe.v1.payment_intents.update(intent, params={"payment_method": method.id})
        self.stripe.v1.payment_intents.confirm(intent)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextlib.contextmanager
def shop_server(tmp_path: Path, env: dict[str, str] | None = None, stripe_base: str | None = None, stripe_client=None):
    """`photogen serve` in a fresh home under `tmp_path`, payments on against localstripe when
    `stripe_base` is given (its webhooks pointed at this serve), off otherwise; with an API key
    from `photogen api-key create --json`. Every process it started is stopped by its pid
    (tests/test_serve.py serving: SIGTERM, exit 0 asserted, then SIGKILL to anything left)."""
    api_port = free_port()
    env = {"PHOTOGEN_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}", **(env or {})}
    if stripe_base:
        env |= {
            "PHOTOGEN_STRIPE_API_KEY": STRIPE_KEY,
            "PHOTOGEN_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "PHOTOGEN_STRIPE_API_BASE": stripe_base,
        }
    with serving(tmp_path, env, api_port) as (_process, api, home, log):
        if stripe_base:
            webhook = {"url": f"{api}/v1/webhooks/stripe", "secret": STRIPE_WEBHOOK_SECRET}
            requests.post(f"{stripe_base}/_config/webhooks/photogen", data=webhook, timeout=10).raise_for_status()
        yield ShopServer(api=api, home=home, log=log, auth=new_api_key(home), stripe=stripe_client)


# -- accessibility ---------------------------------------------------------------------------

SERIOUS = ("serious", "critical")


def axe_violations(page) -> list[dict]:
    """axe-core (vendored, tests/vendor/axe-core) run on the page as it is now: its violations
    of impact serious or critical, each with the rule, its help text and the elements' selectors.
    Injected through the DevTools protocol, so the page's own Content-Security-Policy stays on."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text() + "\n;undefined")
    violations = page.evaluate(
        """async () => (await window.axe.run(document, {resultTypes: ['violations']})).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').replace(/\\s+/g, ' '))}))"""
    )
    return [v for v in violations if v["impact"] in SERIOUS]


# -- screenshots -----------------------------------------------------------------------------


def artifacts_dir(name: str) -> Path:
    """Where a test keeps what it saw: $PHOTOGEN_TEST_ARTIFACTS/<name>, else a temporary folder."""
    root = os.environ.get("PHOTOGEN_TEST_ARTIFACTS")
    folder = Path(root) / name if root else Path(tempfile.gettempdir()) / "photogen-test-artifacts" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load_images(page, timeout_ms: int = 15_000) -> list[str]:
    """Brings every image of the page into view in turn so that lazy ones load, waits for each
    (at most `timeout_ms` in all), scrolls back to the top; returns the sources that did not
    load (broken, or still loading)."""
    return page.evaluate(
        """async timeout => {
            const deadline = Date.now() + timeout;
            for (const img of document.images) {
                img.scrollIntoView({block: 'center'});
                while (!img.complete && Date.now() < deadline) await new Promise(r => setTimeout(r, 50));
            }
            window.scrollTo(0, 0);
            return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src);
        }""",
        timeout_ms,
    )


@dataclass
class Screenshots:
    """Each step's screenshot, numbered in order, in the artifacts folder. `publish()`, at the
    end of a run that passed, makes them the README's (docs/shop/) when `for_docs` and
    PHOTOGEN_UPDATE_SCREENSHOTS=1: the whole set replaced, none left from an older run."""

    folder: Path
    for_docs: bool = False
    taken: list[Path] = field(default_factory=list)

    def __call__(self, page, step: str) -> Path:
        name = f"{len(self.taken) + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower()).strip('-')}.png"
        path = self.folder / name
        load_images(page)
        page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        self.taken.append(path)
        return path

    def publish(self) -> None:
        if not (self.for_docs and os.environ.get("PHOTOGEN_UPDATE_SCREENSHOTS") == "1"):
            return
        DOCS_SHOP.mkdir(parents=True, exist_ok=True)
        for old in DOCS_SHOP.glob("*.png"):
            old.unlink()
        for path in self.taken:
            shutil.copyfile(path, DOCS_SHOP / path.name)


def screenshots(name: str, for_docs: bool = False) -> Screenshots:
    """A fresh set of screenshots under the artifacts folder `name` (its old PNGs removed)."""
    folder = artifacts_dir(name)
    for old in folder.glob("*.png"):
        old.unlink()
    return Screenshots(folder, for_docs)
