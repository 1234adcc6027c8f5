"""The client area in Debian's chromium (headless), driven by Playwright for Python.

The app, the PayPal stand-in and the browser all run on 127.0.0.1; chromium is /usr/bin/chromium
(installed by .ci/install-chromium), never a Playwright-downloaded build. The browser exercises the
same HTTP paths on either database, so these run on SQLite only (the rest of tests/web covers
PostgreSQL).
"""
from __future__ import annotations

import os
import re

import pytest

from billing_core import invoices as inv

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CALLGATE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def page():
    from playwright.async_api import async_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-chromium")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = await browser.new_context()
        context.set_default_timeout(15_000)
        pg = await context.new_page()
        try:
            yield pg
        finally:
            await context.close()
            await browser.close()


async def _sign_in(page, url: str, customer) -> None:
    await page.goto(url + "/")
    await page.fill("#email", customer.email)
    await page.fill("#password", customer.password)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(url + "/balance")


async def _balance(page) -> str:
    return (await page.inner_text("#balance")).strip()


async def test_sign_in_add_funds_through_paypal_and_see_the_balance_rise(page, paying_site, alice, core):
    url, standin = paying_site.url, paying_site.standin
    await _sign_in(page, url, alice)
    assert await page.inner_text("h1") == "Credit Balance"
    assert await _balance(page) == "10.00 CAD"
    assert (await page.inner_text("#threshold")).strip() == "5.00 CAD"
    assert (await page.inner_text("#status")).strip() == "Active"

    await page.click("#add-funds")
    await page.wait_for_url(url + "/funds")
    assert "Minimum 25.00 CAD, maximum 1000.00 CAD." in await page.inner_text("#amount-limits")

    # A wrong amount: the error is next to the field and nothing is written.
    await page.fill("#amount", "10.5")
    await page.click("#add-funds-submit")
    assert "between 25.00 and 1000.00 CAD" in await page.inner_text("#amount-error")
    assert await page.get_attribute("#amount", "aria-invalid") == "true"
    assert await inv.list_invoices(core, "alice") == []

    await page.fill("#amount", "50.00")
    await page.click("#add-funds-submit")
    await page.wait_for_url(re.compile(re.escape(standin.base_url) + r"/checkoutnow\?token="))
    assert (await page.inner_text("#amount")).strip() == "50.00 CAD"
    await page.click("#pay-paypal")

    await page.wait_for_url(re.compile(re.escape(url) + r"/balance\?invoice=\d+&outcome=paid"))
    assert await _balance(page) == "60.00 CAD"
    assert "Payment received: 50.00 CAD added to your balance" in await page.inner_text("main")
    await standin.settle()  # PayPal's webhook for the same capture: still credited once
    await page.reload()
    assert await _balance(page) == "60.00 CAD"

    await page.click("button:has-text('Sign out')")
    await page.wait_for_url(url + "/signin")
    await page.goto(url + "/balance")
    await page.wait_for_url(re.compile(re.escape(url) + r"/signin\?next="))


async def test_cancel_at_paypal_then_pay_the_outstanding_invoice_later(page, paying_site, alice, core):
    url, standin = paying_site.url, paying_site.standin
    await _sign_in(page, url, alice)
    await page.click("#add-funds")
    await page.fill("#amount", "25.00")
    await page.click("#add-funds-submit")
    await page.wait_for_url(re.compile(re.escape(standin.base_url) + r"/checkoutnow\?token="))
    await page.click("#cancel")

    await page.wait_for_url(re.compile(re.escape(url) + r"/invoices\?cancelled=\d+"))
    [invoice] = await inv.list_invoices(core, "alice")
    assert invoice.status == inv.OUTSTANDING
    assert "Payment cancelled at PayPal" in await page.inner_text("main")
    row = page.locator(f"#outstanding #invoice-{invoice.id}")
    assert "25.00 CAD" in await row.inner_text() and "Outstanding" in await row.inner_text()

    await page.click("a:has-text('Credit Balance')")
    assert await _balance(page) == "10.00 CAD"
    assert "1 outstanding deposit invoice" in await page.inner_text("main")

    # Later: Pay now, pay by card this time.
    await page.click("a:has-text('Invoices')")
    await page.locator(f"#invoice-{invoice.id}").get_by_role("button", name="Pay now").click()
    await page.wait_for_url(re.compile(re.escape(standin.base_url) + r"/checkoutnow\?token="))
    await page.click("#pay-card")
    await page.wait_for_url(re.compile(re.escape(url) + r"/balance\?invoice=\d+&outcome=paid"))
    assert await _balance(page) == "35.00 CAD"

    await page.click("a:has-text('Invoices')")
    assert await page.locator("#no-outstanding").count() == 1
    assert "Paid" in await page.locator(f"#history #invoice-{invoice.id}").inner_text()


async def test_calls_and_dids_pages_in_the_browser(page, paying_site, alice, core):
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice-phone", channel_id="b1")
    await core.answer(a.session_id, core.clock.now_ms())
    core.clock.advance(30)  # the talk takes its time (a settle is bounded by the time since answer)
    await core.settle(a.session_id, 30_000)
    await _sign_in(page, paying_site.url, alice)
    await page.click("a:has-text('Calls')")
    row = await page.locator("#calls tbody tr").first.inner_text()
    assert "+15145550100" in row and "0:30" in row
    await page.click("a:has-text('DIDs')")
    assert "+15145551000" in await page.inner_text("#dids")
