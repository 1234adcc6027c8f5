"""contrib/systemd units: each starts a real `callgate` command and carries the hardening."""
from __future__ import annotations

from pathlib import Path

import pytest

from callgate.cli import main

UNITS = sorted((Path(__file__).resolve().parents[2] / "contrib" / "systemd").glob("*.service"))


def _keys(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_every_part_has_a_unit():
    names = {p.name for p in UNITS}
    assert names == {"callgate.service", "callgate-gate.service", "callgate-sidecar.service", "callgate-agi.service",
                     "callgate-web.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_an_existing_command_hardened(unit):
    keys = _keys(unit)
    exec_start = keys["ExecStart"][0].split()
    assert exec_start[0].endswith("/callgate")
    assert exec_start[1] in main.commands, f"{unit.name}: `callgate {exec_start[1]}` does not exist"
    for k, v in {"User": "callgate", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                 "PrivateTmp": "yes", "Restart": "on-failure", "KillSignal": "SIGTERM"}.items():
        assert keys.get(k) == [v], f"{unit.name}: {k}"
    assert keys["CapabilityBoundingSet"] == [""]
    assert "AF_INET" in keys["RestrictAddressFamilies"][0]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_raises_the_descriptor_limit_well_above_the_fastagi_cap(unit):
    from agi.settings import AgiSettings

    [limit] = _keys(unit)["LimitNOFILE"]
    assert limit.isdigit() and int(limit) >= 4 * AgiSettings().max_connections, f"{unit.name}: LimitNOFILE={limit}"
