"""Derive the ARI REST table (ari_app/swagger_table.py) from Asterisk's swagger api-docs.

    python -m callgate_fakes.ari_simulator.swagger_gen /work/shared/ari/api-docs > ari_app/swagger_table.py

The table is carried inside the project so the simulator (and its tests) do not need the
api-docs folder at run time; ``tests/ari/test_simulator_swagger.py`` re-derives it when the folder
exists and checks that the committed module is identical.
"""
from __future__ import annotations

import json
import pprint
import sys
from pathlib import Path

HEADER = '''"""ARI REST table, GENERATED from the Asterisk ARI swagger api-docs (apiVersion {version}).

Do not edit: regenerate with
    python -m callgate_fakes.ari_simulator.swagger_gen /work/shared/ari/api-docs > ari_app/swagger_table.py

OPERATIONS: one dict per (path template, HTTP method): ``path`` (without /ari), ``method``,
``nickname``, ``resource`` (the api-docs file), ``websocket`` (the events upgrade), ``params``
(each: ``name``, ``param_type`` path/query/body, ``data_type`` string/int/long/boolean/
containers/object, ``required``, ``allow_multiple``, ``allowed_values`` (list or None),
``min_value`` (RANGE minimum or None), ``default``), and ``errors`` ({{status: reason}}).
"""
'''


def derive_table(api_docs_dir: str | Path) -> dict:
    """{"api_version": str, "operations": [...]} from the api-docs folder, in resources.json order."""
    root = Path(api_docs_dir)
    resources = json.loads((root / "resources.json").read_text())
    operations: list[dict] = []
    for entry in resources["apis"]:
        name = entry["path"].rsplit("/", 1)[-1].replace(".{format}", ".json")
        doc = json.loads((root / name).read_text())
        for api in doc.get("apis", []):
            for op in api.get("operations", []):
                params = []
                for p in op.get("parameters", []):
                    allowed = p.get("allowableValues") or {}
                    params.append({
                        "name": p["name"],
                        "param_type": p["paramType"],
                        "data_type": p.get("dataType", "string"),
                        "required": bool(p.get("required", False)),
                        "allow_multiple": bool(p.get("allowMultiple", False)),
                        "allowed_values": list(allowed["values"]) if allowed.get("valueType") == "LIST" else None,
                        "min_value": allowed.get("min") if allowed.get("valueType") == "RANGE" else None,
                        "default": p.get("defaultValue"),
                    })
                operations.append({
                    "path": api["path"],
                    "method": op["httpMethod"],
                    "nickname": op.get("nickname", ""),
                    "resource": name[:-len(".json")],
                    "websocket": op.get("upgrade") == "websocket",
                    "params": params,
                    "errors": {int(e["code"]): e.get("reason", "") for e in op.get("errorResponses", [])},
                })
    return {"api_version": resources.get("apiVersion", ""), "operations": operations}


def render_module(table: dict) -> str:
    body = HEADER.format(version=table["api_version"])
    body += f"\nAPI_VERSION = {table['api_version']!r}\n\n"
    body += "OPERATIONS = " + pprint.pformat(table["operations"], width=110, sort_dicts=False) + "\n"
    return body


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m callgate_fakes.ari_simulator.swagger_gen API_DOCS_DIR", file=sys.stderr)
        return 2
    sys.stdout.write(render_module(derive_table(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
