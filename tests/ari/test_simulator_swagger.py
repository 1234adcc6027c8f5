"""The simulator's REST table (callgate_fakes/ari_simulator/ari_swagger.json) is derived from the ARI
swagger api-docs and must stay identical."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from callgate_fakes.ari_simulator import swagger_table
from callgate_fakes.ari_simulator.routing import match_path as _match_path
from callgate_fakes.ari_simulator.swagger_gen import derive_table, render_json

# CALLGATE_ARI_API_DOCS, else the nearest shared/ari/api-docs above the checkout (../shared beside
# a clone, or beside a folder of worktrees)
_NEAREST = next((p / "shared/ari/api-docs" for p in Path(__file__).resolve().parents[2:]
                 if (p / "shared/ari/api-docs").is_dir()), Path(__file__).resolve().parents[3] / "shared/ari/api-docs")
API_DOCS = Path(os.environ.get("CALLGATE_ARI_API_DOCS", _NEAREST))


@pytest.mark.skipif(not API_DOCS.is_dir(), reason=f"{API_DOCS} not present (the table is carried in the project)")
def test_table_is_rederived_identically_from_the_api_docs():
    table = derive_table(API_DOCS)
    assert table["operations"] == swagger_table.OPERATIONS
    assert table["api_version"] == swagger_table.API_VERSION
    data = (Path(swagger_table.__file__).parent / swagger_table.DATA_FILE).read_text(encoding="utf-8")
    assert render_json(table) == data


def test_table_covers_what_the_gate_uses():
    ops = {(o["method"], o["path"]): o for o in swagger_table.OPERATIONS}
    for key in [("POST", "/channels/{channelId}/ring"), ("POST", "/channels/{channelId}/progress"),
                ("POST", "/channels/create"), ("POST", "/channels/{channelId}/dial"),
                ("DELETE", "/channels/{channelId}"), ("POST", "/bridges/{bridgeId}/addChannel"),
                ("POST", "/applications/{applicationName}/subscription"),
                ("POST", "/channels/{channelId}/continue"), ("GET", "/events")]:
        assert key in ops, key
    reason = next(p for p in ops[("DELETE", "/channels/{channelId}")]["params"] if p["name"] == "reason")
    assert "rejected" in reason["allowed_values"] and "insufficient_funds" not in reason["allowed_values"]
    create = {p["name"]: p for p in ops[("POST", "/channels/create")]["params"]}
    assert create["endpoint"]["required"] and create["app"]["required"]
    assert create["variables"]["param_type"] == "body"


def test_literal_segments_win_over_path_parameters():
    ops, values = _match_path("/channels/create")
    assert {o["nickname"] for o in ops} == {"create"} and values == {}
    ops, values = _match_path("/channels/1795802780.124")
    assert {o["nickname"] for o in ops} == {"get", "originateWithId", "hangup"}
    assert values == {"channelId": "1795802780.124"}
    assert _match_path("/no/such/resource") is None
