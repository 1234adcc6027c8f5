"""The operator console in Debian's chromium (headless, Playwright), SQLite only like
test_browser.py: an operator signs in with TOTP and credits an account the customer then sees; a
support user's credit is refused and writes nothing; a form without its CSRF token is refused;
paging; the CSV export's rows are `calls --json`'s; from the nav, a package edit and a DID
assigned and released."""
from __future__ import annotations

import csv
import io
import os

import pytest
from sqlalchemy import func, select

from billing_core.admin import Admin
from billing_core.domain.rating import Rate
from billing_core.store.tables import call_sessions, deck_versions, ledger, rates
from billing_core.store.tables_operators import audit_log
from callgate.commands.common import jsonable
from callgate.web.admin_pages import CALL_FIELDS

from .test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-chromium")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser, **kw):
    context = await browser.new_context(accept_downloads=True, **kw)
    context.set_default_timeout(15_000)
    return await context.new_page()


async def operator_signs_in(page, url: str, op, clock) -> None:
    await page.goto(url + "/admin/signin")
    await page.fill("#email", op.email)
    await page.fill("#password", op.password)
    if op.totp_secret:
        await page.fill("#code", op.code(clock))
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(url + "/admin")


async def rows_in(core, table) -> int:
    return await core.store.run(lambda conn: conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_operator_with_totp_credits_and_the_customer_sees_it(browser, web_app, core, clock, alice, admin_op):
    op_page, customer = await new_page(browser), await new_page(browser)
    # a wrong code first: refused with the same words as a wrong password
    await op_page.goto(web_app + "/admin/signin")
    await op_page.fill("#email", admin_op.email)
    await op_page.fill("#password", admin_op.password)
    await op_page.fill("#code", "000000" if admin_op.code(clock) != "000000" else "111111")
    await op_page.click("button:has-text('Sign in')")
    assert await op_page.inner_text("#signin-error") == "Wrong email, password or code."

    await operator_signs_in(op_page, web_app, admin_op, clock)
    assert "ops@example.test (admin)" in await op_page.inner_text("#operator")
    await op_page.click("a:has-text('Accounts')")
    await op_page.fill("#q", "alice-phone")  # by endpoint
    await op_page.click("button:has-text('Search')")
    await op_page.click("#accounts a:has-text('alice')")
    await op_page.wait_for_url(web_app + "/admin/accounts/alice")
    await op_page.fill("#amount", "7.25")
    await op_page.fill("#reason", "goodwill for a dropped call")
    sent = {name: await op_page.locator(f"#credit-form [name={name}]").input_value()
            for name in ("csrf", "key", "direction", "amount", "reason")}
    await op_page.click("#credit-submit")
    await op_page.wait_for_url(web_app + "/admin/accounts/alice?done=credited")
    assert await op_page.inner_text("#balance") == "17.25 CAD"
    # the same form submitted again (a double click, the browser's "resubmit form?"): credited once
    again = await op_page.request.post(web_app + "/admin/accounts/alice/credit", form=sent)
    assert again.ok and again.url.endswith("/admin/accounts/alice?done=replayed")
    await op_page.reload()
    assert await op_page.inner_text("#balance") == "17.25 CAD"

    await customer.goto(web_app + "/")
    await customer.fill("#email", alice.email)
    await customer.fill("#password", alice.password)
    await customer.click("button:has-text('Sign in')")
    await customer.wait_for_url(web_app + "/balance")
    assert (await customer.inner_text("#balance")).strip() == "17.25 CAD"
    # and the customer's session opens nothing in the console
    resp = await customer.goto(web_app + "/admin/accounts/alice")
    assert resp.status == 403


async def test_support_credit_is_refused_and_writes_nothing(browser, web_app, core, clock, alice, support_op):
    page = await new_page(browser)
    await operator_signs_in(page, web_app, support_op, clock)
    await page.goto(web_app + "/admin/accounts/alice")
    assert await page.locator("#credit-form").count() == 0
    csrf = await page.locator("#note-form input[name=csrf]").get_attribute("value")
    before = (await rows_in(core, ledger), await rows_in(core, audit_log))
    # the form the page does not offer, posted anyway with the operator's own cookie and token
    resp = await page.request.post(web_app + "/admin/accounts/alice/credit", form={
        "csrf": csrf, "key": "abcdefghijk", "direction": "credit", "amount": "100", "reason": "self-service"})
    assert resp.status == 403 and "may not do this" in await resp.text()
    assert (await rows_in(core, ledger), await rows_in(core, audit_log)) == before
    # what support may do: a note
    await page.fill("#note", "Customer asked about a refund.")
    await page.click("#note-submit")
    await page.wait_for_url(web_app + "/admin/accounts/alice?done=noted")
    assert "Customer asked about a refund." in await page.inner_text("#notes")


async def test_a_form_without_csrf_is_refused(browser, web_app, core, clock, alice, admin_op):
    page = await new_page(browser, bypass_csp=True)  # to remove the token with a script
    await operator_signs_in(page, web_app, admin_op, clock)
    await page.goto(web_app + "/admin/accounts/alice")
    await page.evaluate("document.querySelector('#credit-form input[name=csrf]').remove()")
    await page.fill("#amount", "5")
    await page.fill("#reason", "no token")
    before = await rows_in(core, ledger)
    await page.click("#credit-submit")
    await page.wait_for_load_state()
    assert await page.inner_text("h1") == "Form refused"
    assert await rows_in(core, ledger) == before


async def test_paging_and_the_csv_export(browser, web_app, core, clock, alice, admin_op):
    for i in range(55):
        await core.admin.add_account(f"z{i:03d}", name=f"Zed {i}", email=f"z{i}@example.test", package="basic")
    for i in range(3):
        a = await core.authorize_call(direction="outbound", number=f"1514555010{i}", endpoint="alice-phone",
                                      channel_id=f"b{i}")
        await core.answer(a.session_id, clock.now_ms())
        clock.advance(20)
        await core.settle(a.session_id, 19_000)
    page = await new_page(browser)
    await operator_signs_in(page, web_app, admin_op, clock)
    await page.goto(web_app + "/admin/accounts")
    assert await page.locator("#accounts tbody tr").count() == 50
    await page.click("#next-page")
    assert await page.locator("#accounts tbody tr").count() == 6
    assert "z054" in await page.inner_text("#accounts")
    await page.click("#first-page")
    assert "alice" in await page.inner_text("#accounts")

    await page.goto(web_app + "/admin/calls?account=alice")
    async with page.expect_download() as info:
        await page.click("#csv")
    download = await info.value
    text = open(await download.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    expected = jsonable(await Admin(core).calls(ref="alice"))  # what `callgate calls --json` prints
    assert len(rows) == 3
    assert rows == [{k: "" if want[k] is None else str(want[k]) for k in CALL_FIELDS} for want in expected]


async def test_the_live_page_shows_a_call_appear_and_end_without_reloading(browser, web_app, core, clock, alice,
                                                                          support_op):
    page = await new_page(browser)
    await operator_signs_in(page, web_app, support_op, clock)
    await page.goto(web_app + "/admin/live")
    assert "No live calls." in await page.inner_text("#live")
    await page.evaluate("window.notReloaded = true")  # gone if the page reloads
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice-phone", channel_id="l1")
    row = page.locator(f'#live tr[data-id="{a.session_id}"]')
    await row.wait_for(state="attached", timeout=10_000)
    assert "+15145550100" in await row.inner_text() and "alice" in await row.inner_text()
    assert await page.inner_text("#live-count") == "(1)"
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(5)
    await core.settle(a.session_id, 4_000)
    await row.wait_for(state="detached", timeout=10_000)
    assert "No live calls." in await page.inner_text("#live")
    assert await page.evaluate("window.notReloaded") is True


async def test_a_deck_upload_with_a_bad_row_shows_the_line_and_a_good_one_applies_on_confirm(
        browser, web_app, core, clock, admin_op, tmp_path):
    header = "prefix,description,rate_per_min,connect_fee,initial_increment,increment\n"
    await Admin(core).import_plan("std", [Rate("1", 10_000, 0, 60, 60, "NANP")])  # 0.01/min
    bad, good = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.write_text(header + "1,NANP,0.01,0,60,60\n1514,Montreal,0.02,0,sixty,60\n")
    good.write_text(header + "1,NANP,0.009,0,60,60\n1514,Montreal,0.002,0,6,6\n")
    page = await new_page(browser)
    await operator_signs_in(page, web_app, admin_op, clock)
    before = (await rows_in(core, deck_versions), await rows_in(core, rates), await rows_in(core, audit_log))
    await page.click("a:has-text('Rates')")
    await page.wait_for_url(web_app + "/admin/rates")
    await page.fill("#plan", "std")
    await page.set_input_files("#file", str(bad))
    await page.click("button:has-text('Preview')")
    assert "line 3, column initial_increment" in await page.inner_text("#deck-error")
    assert (await rows_in(core, deck_versions), await rows_in(core, rates), await rows_in(core, audit_log)) == before

    await page.set_input_files("#file", str(good))
    await page.click("button:has-text('Preview')")
    await page.wait_for_url(web_app + "/admin/rates/preview")
    assert await page.inner_text("#count-added") == "1"
    assert "1514" in await page.inner_text("#added") and "Montreal" in await page.inner_text("#added")
    assert "0.009/min" in await page.inner_text("#repriced")
    assert (await rows_in(core, deck_versions), await rows_in(core, rates)) == before[:2]  # not yet
    await page.click("#apply")
    await page.wait_for_url(web_app + "/admin/rates?done=*")
    assert "version 2 imported" in await page.inner_text("main")
    shown = await Admin(core).show_plan("std")
    assert {r["prefix"]: r["rate_per_min"] for r in shown["rates"]} == {"1": "0.009", "1514": "0.002"}
    assert await rows_in(core, audit_log) == before[2] + 1


async def test_an_admin_ends_a_live_call_from_the_redrawn_table(browser, web_app, core, clock, alice, admin_op):
    page = await new_page(browser)
    await operator_signs_in(page, web_app, admin_op, clock)
    await page.goto(web_app + "/admin/live")
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice-phone", channel_id="e1")
    await core.answer(a.session_id, clock.now_ms())
    button = page.locator(f'#live tr[data-id="{a.session_id}"] button:has-text("End call")')
    await button.wait_for(state="attached", timeout=10_000)  # drawn by the page's script, not a reload
    await button.click()
    await page.wait_for_url(web_app + "/admin/live?done=ended")
    assert "Call ended" in await page.inner_text("main")
    s = await core.store.run(lambda conn: conn.execute(
        select(call_sessions.c.hold_mode).where(call_sessions.c.id == a.session_id)).scalar_one())
    assert s == "ended"


async def test_admin_edits_a_package_and_moves_a_did_from_the_nav(browser, web_app, core, clock, alice, admin_op):
    """Packages and DIDs in the browser: a bad limit shows one error and changes nothing; a good one
    is saved; a free DID is assigned to alice and released with a reason, both in its history."""
    await core.admin.add_did("+15145559999")
    page = await new_page(browser)
    await operator_signs_in(page, web_app, admin_op, clock)
    await page.click("nav a:has-text('Packages')")
    await page.click("#packages a:has-text('basic')")
    await page.wait_for_url(web_app + "/admin/packages/basic")
    await page.fill("#f-daily_cap", "five")
    await page.click("#package-submit")
    assert (await page.inner_text("#action-error")).startswith("--daily-cap:")
    assert (await core.admin.show_package("basic"))["daily_cap"] is None
    await page.fill("#f-daily_cap", "5.00")
    await page.fill("#f-reason", "cap every account")
    await page.click("#package-submit")
    await page.wait_for_url(web_app + "/admin/packages/basic?done=saved")
    assert await page.inner_text("#p-daily_cap") == "5.00"

    await page.click("nav a:has-text('DIDs')")
    await page.select_option("select[name=state]", "free")
    await page.click("button:has-text('Show')")
    await page.click("#dids a:has-text('+15145559999')")
    await page.fill("#assign-account", "alice")
    await page.click("#assign-submit")
    await page.wait_for_url("**/admin/dids/%2B15145559999?done=assigned")
    assert await page.inner_text("#holder") == "alice"
    await page.fill("#release-reason", "number ported out")
    await page.click("#release-submit")
    await page.wait_for_url("**done=released")
    assert await page.inner_text("#holder") == "free"
    assert "number ported out" in await page.inner_text("#history")
