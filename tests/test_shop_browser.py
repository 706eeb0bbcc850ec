"""The customer's pages under /shop/ in a real browser (Debian's Chromium, Playwright) against
a real `photogen serve`: a shop's backend opens a session, the customer uploads (a two-face
photo refused in words, a selfie accepted), chooses a style, a product and a tier with the
quote shown, places the order from the keyboard, watches it progress live, opens a proof at
100 %, approves one, and downloads the print file and the bundle. Once with payments off at a
phone's width, with the live updates' event stream cut (the polling fallback), and once with
payments on against localstripe (paid server-side with a test card, as Stripe.js would), where
the page moves on by itself over the event stream; there too an order the shop's backend
placed is hidden from another browser, opened from the shop's email link (`#t=`) and cancelled
on its page. axe-core on every page and state: no
serious or critical violation. Each step's screenshot is kept (tests/browser_helpers.py);
with PHOTOGEN_UPDATE_SCREENSHOTS=1 the payments-on run, once it passed, writes the README's,
docs/shop/*.png.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from PIL import Image

from tests import browser_helpers
from tests.browser_helpers import (
    PlaywrightError,
    ShopServer,
    axe_violations,
    expect,
    load_images,
    screenshots,
    shop_server,
)

chromium = browser_helpers.chromium  # the session's browser (a fixture)

FACES = Path(__file__).parent / "data" / "faces"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
PROOFS_PATIENCE_MS = 300_000  # the fast tier's two proofs on the CPU engine: ~20 s alone, more on 2 busy cores
READY_PATIENCE_MS = 300_000  # the print run after the approval
SETTLED = ("rejected", "failed", "cancelled", "refunded")


def _photos(folder: Path) -> tuple[Path, Path]:
    """A good selfie (one person) and two different people side by side at the same height."""
    selfie = FACES / "obama_senate.jpg"
    left, right = (Image.open(FACES / f"{name}.jpg").convert("RGB") for name in ("ardern_2022", "macron_2025"))
    left, right = (im.resize((round(im.width * 700 / im.height), 700), Image.LANCZOS) for im in (left, right))
    pair = Image.new("RGB", (left.width + right.width, 700))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    two = folder / "two_people.jpg"
    pair.save(two, quality=92)
    return selfie, two


def _settled_read(page, read):
    """`read(page)`, once more after the page has loaded if a reload of its own cut it short."""
    for _ in range(5):
        try:
            return read(page)
        except PlaywrightError:
            page.wait_for_load_state()
    return read(page)


def _landed(page, url: str, what: str) -> None:
    """The page reached `url` (a pattern); else what it shows instead (an error page's words)."""
    try:
        page.wait_for_url(re.compile(url), timeout=30_000)
    except PlaywrightError:
        shown = _settled_read(page, lambda p: p.inner_text("main") if p.locator("main").count() else p.content()[:500])
        error = page.locator("#error").get_attribute("data-code") if page.locator("#error").count() else None
        raise AssertionError(f"{what} led to {page.url}, not {url}: {error or ''} {' '.join(shown.split())}") from None


def _stages(page) -> list[list[str]]:
    return _settled_read(
        page,
        lambda p: p.eval_on_selector_all(
            "#progress li[data-stage]", "items => items.map(li => [li.dataset.stage, li.dataset.status])"
        ),
    )


def _state(page) -> str:
    return _settled_read(page, lambda p: p.get_attribute("#order-state", "data-state") or "")


def _wait_for_state(page, wanted: tuple[str, ...], timeout_ms: int, shop: ShopServer) -> str:
    """Waits, without touching the page, until #order-state shows one of `wanted`."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        state = _state(page)
        if state in wanted:
            return state
        assert state not in SETTLED, f"the order is {state}: {page.inner_text('body')[:1000]}\n{shop.log_tail()}"
        page.wait_for_timeout(500)
    raise AssertionError(f"the page still shows {_state(page)!r}, not {wanted}; stages {_stages(page)}\n{shop.log_tail()}")


class Findings(list):
    """What is wrong with the pages besides the flow itself (serious or critical axe
    violations, sideways scrolling on a phone, script errors), gathered over the whole run so
    that one failure does not hide the next; the test fails at its end if there is any."""

    def accessible(self, page, where: str) -> None:
        violations = axe_violations(page)
        self.extend(f"axe on {where}: [{v['impact']}] {v['id']}: {v['help']} at {v['nodes'][:3]}" for v in violations)

    def fits(self, page, where: str) -> None:
        """No sideways scrolling: nothing is wider than the window."""
        width, window = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        if width > window:
            wide = page.evaluate(
                """w => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w)
                .map(e => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''} to ${e.getBoundingClientRect().right}`)""",
                window,
            )
            self.append(f"{where} scrolls sideways at {window} px: {width} px wide, because of {wide[:5]}")

    def images(self, page, where: str) -> None:
        """Every picture on the page loads (proofs, previews, the photos chosen)."""
        if broken := load_images(page):
            self.append(f"images that did not load on {where}: {broken[:5]}")

    def watch(self, page) -> None:
        page.on("pageerror", lambda exc: self.append(f"script error on {page.url}: {exc}"))


@dataclass
class Change:
    """What the order page showed before and after it changed by itself, and whether it did so
    in the open document (a marker set in it survived) or by reloading itself."""

    at: str
    before: tuple[str, list]
    after: tuple[str, list]
    in_place: bool

    @property
    def stage_moved_in_place(self) -> bool:
        return self.in_place and self.before[0] == self.after[0] and self.before[1] != self.after[1]

    def __str__(self) -> str:
        return f"{self.at} {self.before} -> {self.after} ({'in place' if self.in_place else 'reloaded'})"


def _follow(page, shop: ShopServer, until: tuple[str, ...], patience_ms: int) -> list[Change]:
    """Watches the order page, never touching it, until it shows one of the states `until`;
    every change of its state or of its stage list, as it happened."""
    deadline = time.monotonic() + patience_ms / 1000
    changes: list[Change] = []
    while (state := _state(page)) not in until:
        assert state not in SETTLED, f"the order is {state}\n{shop.log_tail()}"
        assert time.monotonic() < deadline, f"still {state} after {patience_ms / 1000:.0f} s: {changes}\n{shop.log_tail()}"
        before = (state, _stages(page))
        _settled_read(page, lambda p: p.evaluate("() => { window.__sameDocument = true }"))  # gone if it reloads
        with contextlib.suppress(PlaywrightError):  # a reload destroys the context it waits in
            page.wait_for_function(
                """([state, stages]) => document.querySelector('#order-state').dataset.state !== state ||
                JSON.stringify([...document.querySelectorAll('#progress li[data-stage]')]
                  .map(li => [li.dataset.stage, li.dataset.status])) !== JSON.stringify(stages)""",
                arg=list(before),
                timeout=max(1, deadline - time.monotonic()) * 1000,
            )
        page.wait_for_load_state()
        in_place = _settled_read(page, lambda p: p.evaluate("() => window.__sameDocument === true"))
        after = (_state(page), _stages(page))
        if after != before or not in_place:
            changes.append(Change(time.strftime("%H:%M:%S"), before, after, in_place))
    return changes


def _check_detail(context, url: str, viewport: dict, shots, findings: Findings) -> None:
    """A proof's detail page: the picture loads, and on a screen wide enough it is shown at
    100 % (one CSS pixel per image pixel); on a phone it fits the width instead."""
    detail = context.new_page()
    try:
        findings.watch(detail)
        answer = detail.goto(url)
        assert answer is not None and answer.status == 200, answer and answer.status
        image = detail.locator("main img").first
        expect(image).to_be_visible()
        detail.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        natural, shown = image.evaluate("img => [img.naturalWidth, img.getBoundingClientRect().width]")
        if natural <= viewport["width"] - 64:  # room for it: shown at its own size
            if abs(shown - natural) > 1:
                findings.append(f"the proof's detail is not at 100 %: {natural} px wide, shown at {shown:.0f} px")
        findings.fits(detail, "the proof's detail page")
        findings.images(detail, "the proof's detail page")
        findings.accessible(detail, "a proof at 100 %")
        shots(detail, "proof at 100 percent")
    finally:
        detail.close()


def _wait_for_previews(shop: ShopServer, patience: float = 300) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        styles = shop.call("GET", "/v1/styles").json()
        if all(style["preview_url"] for style in styles):
            return
        time.sleep(2)
    raise AssertionError(f"the styles' previews were not rendered in {patience:.0f} s\n{shop.log_tail()}")


def _shop_flow(
    browser, shop: ShopServer, tmp_path: Path, *, viewport: dict, payments: bool, cut_event_stream: bool, previews: bool, shots
):
    selfie, two_people = _photos(tmp_path)
    context = browser.new_context(viewport=viewport, accept_downloads=True, locale="en-US")
    context.set_default_timeout(30_000)
    findings = Findings()
    requested: list[str] = []
    try:
        page = context.new_page()
        findings.watch(page)
        page.on("request", lambda request: requested.append(request.url))
        page.on("dialog", lambda dialog: dialog.accept())  # a confirm() before approving, if the page asks
        if cut_event_stream:  # the live updates' stream never opens: the page must poll instead
            context.route(re.compile(r".*/shop/orders/[^/]+/events.*"), lambda route: route.abort())

        # -- the shop's backend opens a session and sends the customer there
        session = shop.shop_session(customer_ref="browser-customer", return_url="https://shop.example/thanks")
        assert session["url"].startswith(f"{shop.api}/shop/start#s="), session
        page.goto(session["url"])
        _landed(page, r"/shop/upload$", "the shop's link")
        assert "#s=" not in page.url and "s=" not in page.url.split("/shop/upload")[-1]
        cookies = {c["name"]: c for c in context.cookies(page.url)}
        assert cookies and all(c["httpOnly"] for c in cookies.values()), cookies
        findings.fits(page, "the upload page")
        photos = page.locator("input#photos")
        assert photos.get_attribute("type") == "file" and photos.get_attribute("multiple") is not None
        findings.accessible(page, "the upload page")
        shots(page, "upload")

        # -- the consent box not ticked: the photo is refused, in words, and no way on with it
        consent = page.locator("input#consent")
        expect(consent).not_to_be_checked()
        photos.set_input_files(selfie)
        verdict = page.locator("#face-verdict")
        expect(verdict).to_contain_text(re.compile(r"agree", re.I))
        expect(page.locator("#to-style")).to_be_disabled()
        consent.check()

        # -- two people: refused, in words, and no way on with it
        photos.set_input_files(two_people)
        expect(verdict).to_have_attribute("role", "status")
        expect(verdict).to_contain_text(re.compile(r"\btwo\b|faces", re.I))
        to_style = page.locator("#to-style")
        expect(to_style).to_be_disabled()
        findings.accessible(page, "the upload page with a refused photo")
        shots(page, "upload refused")

        # -- a selfie: accepted, and on to the style
        photos.set_input_files(selfie)
        expect(to_style).to_be_enabled(timeout=60_000)
        expect(verdict).to_contain_text(selfie.name)
        expect(verdict).not_to_contain_text(re.compile(r"\btwo\b|faces", re.I))
        findings.accessible(page, "the upload page with an accepted photo")
        findings.images(page, "the upload page")
        shots(page, "upload accepted")
        if previews:  # the styles' previews (rendered by serve on its start) shown, not placeholders
            _wait_for_previews(shop)
        to_style.click()
        page.wait_for_url(re.compile(r"/shop/style"))
        if previews:
            sources = page.eval_on_selector_all("input[name=style] + label img", "imgs => imgs.map(i => i.src)")
            assert sources and not any(src.endswith("placeholder.svg") for src in sources), sources

        # -- style, product, tier: the quote follows the choices
        styles = page.locator("input[name=style]")
        assert styles.count() >= 2
        styles.nth(1).check()
        style_id = styles.nth(1).get_attribute("value")
        product = page.locator("select#product")
        product.select_option("poster_a3")
        quote = page.locator("#quote")
        page.locator("input[name=tier][value=premium]").check()
        expect(quote).to_contain_text(re.compile(r"\b55[.,]00\b"))  # poster_a3 premium: 5500 cents
        page.locator("input[name=tier][value=fast]").check()
        expect(quote).to_contain_text(re.compile(r"\b25[.,]00\b"))  # poster_a3 fast: 2500 cents
        expect(quote).to_contain_text(re.compile(r"\b\d+ ?(s|sec|seconds?|min|minutes?|h|hours?)\b", re.I))  # the wait
        findings.fits(page, "the style page")
        findings.images(page, "the style page")
        findings.accessible(page, "the style page")
        shots(page, "style")

        # -- the keyboard: Tab from the tier to the place-order button, Enter places the order
        page.locator("input[name=tier][value=fast]").focus()
        for _ in range(40):
            if page.evaluate("() => document.activeElement && document.activeElement.id") == "place-order":
                break
            page.keyboard.press("Tab")
        else:
            raise AssertionError("Tab never reached #place-order")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/shop/orders/[^/#?]+"))
        order_id = re.search(r"/shop/orders/([^/#?]+)", page.url).group(1)
        placed = shop.order(order_id)
        chosen_order = (placed["style_id"], placed["product_id"], placed["tier"], placed["variants"])
        assert chosen_order == (style_id, "poster_a3", "fast", 2), placed

        # -- paying, where payments are on: the page moves on by itself once Stripe has the money
        if payments:
            expect(page.locator("#order-state")).to_have_attribute("data-state", "awaiting_payment")
            intent = page.get_attribute("#payment", "data-payment-intent")
            assert intent and intent == placed["payment"]["payment_intent_id"], (intent, placed["payment"])
            expect(page.locator("form#cancel")).to_have_count(1)  # cancellable before paying
            findings.accessible(page, "the order page, awaiting payment")
            shots(page, "order awaiting payment")
            shop.pay(intent)
            _wait_for_state(page, ("paid", "generating", "proofs_ready"), 120_000, shop)
            expect(page.locator("#payment")).to_have_count(0)

        # -- live progress: the stage list changes in the open page (a new state may reload it;
        # a stage that starts or ends within one must show with no reload at all)
        assert _stages(page), "no #progress li[data-stage]"
        findings.accessible(page, f"the order page ({_state(page)})")
        changes = _follow(page, shop, ("generating", "proofs_ready"), PROOFS_PATIENCE_MS)
        findings.accessible(page, f"the order page ({_state(page)})")
        shots(page, "order in progress")
        changes += _follow(page, shop, ("proofs_ready",), PROOFS_PATIENCE_MS)
        events = [url for url in requested if f"/shop/orders/{order_id}/events" in url]
        assert events, "the page never asked for its event stream"  # where cut, it polled status.json instead
        if cut_event_stream:
            assert any(f"/shop/orders/{order_id}/status.json" in url for url in requested), "no polling fallback"

        # -- the proofs: one at 100 %, then approve another
        figures = page.locator("#proofs figure[data-variant]")
        expect(figures).to_have_count(2)
        expect(page.locator("form#cancel")).to_have_count(1)  # cancellable at the proofs
        findings.accessible(page, "the order page with its proofs")
        findings.fits(page, "the order page with its proofs")
        findings.images(page, "the order page with its proofs")
        shots(page, "proofs")
        approvable = page.locator("#proofs figure[data-variant]:has(form.approve button[type=submit])")
        assert approvable.count() >= 1, page.inner_html("#proofs")
        chosen = approvable.last  # not simply the first: the one clicked must be the one printed
        variant = int(chosen.get_attribute("data-variant"))
        _check_detail(context, urljoin(page.url, chosen.locator("a.detail").get_attribute("href")), viewport, shots, findings)

        chosen.locator("form.approve button[type=submit]").click()
        _wait_for_state(page, ("approved", "rendering", "ready"), 60_000, shop)
        expect(page.locator("form#cancel")).to_have_count(0)  # approved: the print is on its way
        expect(page.locator(f"#proofs figure[data-variant='{variant}'].chosen")).to_have_count(1)
        findings.accessible(page, f"the order page ({_state(page)})")
        shots(page, "approved")
        changes += _follow(page, shop, ("ready",), READY_PATIENCE_MS)
        # it moved on by itself all along; over its event stream a stage's start or end shows in
        # the open page (the 3 s polling may step over a stage of a second or two: not asked there)
        assert {"proofs_ready", "ready"} <= {change.after[0] for change in changes}, changes
        if not cut_event_stream:
            assert any(change.stage_moved_in_place for change in changes), "only reloads:\n" + "\n".join(map(str, changes))
        ready = shop.order(order_id)
        assert ready["state"] == "ready" and ready["approved_proof"] == variant, (variant, ready["approved_proof"])

        # -- ready: the downloads; shipping shown for an order that ships
        expect(page.locator("a#download-print")).to_be_visible()
        expect(page.locator("#shipping")).to_have_count(1 if ready["shipping_method"] else 0)
        findings.accessible(page, "the order page (ready)")
        findings.fits(page, "the order page (ready)")
        findings.images(page, "the order page (ready)")
        shots(page, "ready")
        with page.expect_download(timeout=60_000) as print_download:
            page.locator("a#download-print").click()
        print_bytes = Path(print_download.value.path()).read_bytes()
        assert print_bytes[:3] == b"\xff\xd8\xff" or print_bytes[:4] in (b"II*\x00", b"MM\x00*"), print_bytes[:8]
        printed = Image.open(io.BytesIO(print_bytes))
        assert printed.format in ("JPEG", "TIFF") and printed.size == (3508, 4961), (printed.format, printed.size)
        with page.expect_download(timeout=60_000) as bundle_download:
            page.locator("a#download-bundle").click()
        assert bundle_download.value.suggested_filename.endswith(".zip"), bundle_download.value.suggested_filename
        bundle = zipfile.ZipFile(Path(bundle_download.value.path()))
        names = bundle.namelist()
        assert "order.json" in names and f"proofs/proof_{variant}.png" in names, names
        assert any(name.startswith("print_file.") for name in names), names
        assert json.loads(bundle.read("order.json"))["approved_proof"] == variant

        assert not findings, "\n".join(findings)
        return order_id
    finally:
        context.close()


def _email_link_and_cancel(browser, shop: ShopServer, selfie: Path) -> None:
    """An order the shop's backend placed (POST /v1/orders): another browser cannot see its
    page; the shop's email link (`#t=<customer_token>`) opens it, the token leaves the address
    bar, and the customer cancels it there."""
    upload = shop.call("POST", "/v1/uploads", data={"consent": "true"}, files={"file": (selfie.name, selfie.read_bytes())})
    assert upload.status_code == 201, upload.text
    body = {"upload_id": upload.json()["id"], "style_id": "ink_etching", "product_id": "poster_a3", "tier": "fast"}
    created = requests.post(
        f"{shop.api}/v1/orders", headers={**shop.auth, "Idempotency-Key": "email-link-1"}, json=body, timeout=30
    )
    assert created.status_code == 201, created.text
    order_id, token = created.json()["id"], created.json()["customer_token"]
    findings = Findings()
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    try:
        page = context.new_page()
        findings.watch(page)
        page.goto(f"{shop.api}/shop/orders/{order_id}")  # no cookie, no token: nothing of the order
        expect(page.locator("#error")).to_have_attribute("data-code", "order_not_found")
        expect(page.locator("#order-state")).to_have_count(0)
        page.close()
        page = context.new_page()  # the email link opens anew (a goto that only adds a fragment would not load)
        findings.watch(page)
        page.goto(f"{shop.api}/shop/orders/{order_id}#t={token}")
        _landed(page, rf"/shop/orders/{order_id}$", "the email link")
        expect(page.locator("#order-state")).to_have_attribute("data-state", "awaiting_payment")
        assert token not in page.url, page.url
        findings.accessible(page, "the order page opened from an email link")
        page.locator("form#cancel button[type=submit]").click()
        expect(page.locator("#order-state")).to_have_attribute("data-state", "cancelled")
        findings.accessible(page, "the order page (cancelled)")
        assert shop.order(order_id)["state"] == "cancelled"
    finally:
        context.close()
    assert not findings, "\n".join(findings)


@pytest.mark.slow  # photogen serve, a browser, a whole order
@pytest.mark.timeout(900)
def test_the_customer_orders_on_a_phone_with_payments_off_and_no_event_stream(chromium, tmp_path):
    shots = screenshots("shop-browser-payments-off-375px")
    with shop_server(tmp_path) as shop:
        _shop_flow(chromium, shop, tmp_path, viewport=PHONE, payments=False, cut_event_stream=True, previews=False, shots=shots)


@pytest.mark.slow  # photogen serve, a browser, a whole order
@pytest.mark.timeout(900)
def test_the_customer_pays_and_orders_with_payments_on(chromium, tmp_path, stripe_client, stripe_base):
    shots = screenshots("shop-browser-payments-on", for_docs=True)
    with shop_server(tmp_path, stripe_base=stripe_base, stripe_client=stripe_client) as shop:
        _email_link_and_cancel(chromium, shop, FACES / "ardern_2022.jpg")
        _shop_flow(chromium, shop, tmp_path, viewport=DESKTOP, payments=True, cut_event_stream=False, previews=True, shots=shots)
    shots.publish()  # PHOTOGEN_UPDATE_SCREENSHOTS=1: the README's docs/shop/*.png


def test_the_readme_shows_every_screenshot_of_the_shop():
    """docs/shop/*.png (written by the payments-on run above with PHOTOGEN_UPDATE_SCREENSHOTS=1)
    and the README's links to them are the same set."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    linked = set(re.findall(r"\(docs/shop/([^)\s]+\.png)\)", readme))
    on_disk = {path.name for path in browser_helpers.DOCS_SHOP.glob("*.png")}
    assert linked and linked == on_disk, (sorted(linked - on_disk), sorted(on_disk - linked))
