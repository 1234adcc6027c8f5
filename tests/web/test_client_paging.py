"""The client area pages its calls and its invoice history (newest first, keyset cursors)."""
from __future__ import annotations

import re

from billing_core import invoices as inv


def _rows(body: str, table: str) -> list[str]:
    return body.split(f'id="{table}"')[1].split("<tbody>")[1].split("</tbody>")[0].split("<tr")[1:]


async def test_calls_are_paged(client, alice, core, clock):
    for i in range(55):
        a = await core.authorize_call(direction="outbound", number=f"1514555{i:04d}", endpoint="alice-phone",
                                      channel_id=f"p{i}")
        await core.answer(a.session_id, clock.now_ms())
        clock.advance(2)
        await core.settle(a.session_id, 1_000)
    await client.sign_in(alice.email, alice.password)
    first = await client.get("/calls")
    rows = _rows(first.body, "calls")
    assert len(rows) == 50 and "+15145550054" in rows[0] and "+15145550005" in rows[-1]
    assert 'id="first-page"' not in first.body
    older = await client.get(re.search(r'id="next-page" href="([^"]+)"', first.body).group(1))
    rows = _rows(older.body, "calls")
    assert len(rows) == 5 and "+15145550004" in rows[0] and "+15145550000" in rows[-1]
    assert 'id="next-page"' not in older.body and 'id="first-page" href="/calls"' in older.body
    bogus = await client.get("/calls?before=not-a-cursor")
    assert bogus.status == 303 and bogus.headers["Location"] == "/calls"


async def test_another_accounts_cursor_shows_only_your_own_calls(client, alice, bob, core, clock):
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="bob-phone", channel_id="b")
    await client.sign_in(alice.email, alice.password)
    page = await client.get(f"/calls?before={clock.now_ms() + 1}:{a.session_id}")
    assert "+15145550100" not in page.body


async def test_invoice_history_is_paged_and_outstanding_always_shown(client, alice, core):
    ids = []
    for _ in range(25):
        invoice = await inv.create_invoice(core, "alice", "25.00", source="cli")
        await inv.cancel_invoice(core, invoice.id, "made in error")
        ids.append(invoice.id)
    open_one = await inv.create_invoice(core, "alice", "30.00", source="cli")
    await client.sign_in(alice.email, alice.password)
    first = await client.get("/invoices")
    history = _rows(first.body, "history")
    assert len(history) == 20 and f"invoice-{ids[-1]}" in history[0]
    assert f'id="invoice-{open_one.id}"' in first.body.split('id="history"')[0]
    older = await client.get(re.search(r'id="next-page" href="([^"]+)"', first.body).group(1))
    history = _rows(older.body, "history")
    assert [re.search(r'invoice-(\d+)', h).group(1) for h in history] == [str(i) for i in reversed(ids[:5])]
    assert f'id="invoice-{open_one.id}"' in older.body  # outstanding ones stay on every page
    assert 'id="next-page"' not in older.body
