"""Derive the ARI REST table (``ari_swagger.json`` beside this module) from Asterisk's swagger api-docs.

    python -m callgate_fakes.ari_simulator.swagger_gen /work/shared/ari/api-docs \\
        > callgate_fakes/ari_simulator/ari_swagger.json

The table is data shipped with the package (``swagger_table`` loads it at import), so the simulator
and its tests do not need the api-docs folder at run time. ``tests/ari/test_simulator_swagger.py``
re-derives it when the folder exists (CALLGATE_ARI_API_DOCS, else ../shared/ari/api-docs beside the
checkout) and checks that the committed file is byte for byte what this script writes.

The file: ``{"api_version": str, "operations": [...]}``, one entry per (path template, HTTP method):
``path`` (without /ari), ``method``, ``nickname``, ``resource`` (the api-docs file), ``websocket``
(the events upgrade), ``params`` (each: ``name``, ``param_type`` path/query/body, ``data_type``
string/int/long/boolean/containers/object, ``required``, ``allow_multiple``, ``allowed_values``
(list or null), ``min_value`` (RANGE minimum or null), ``default``), and ``errors``
({"status": reason}; JSON keys are strings, ``swagger_table`` gives them back as ints).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


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


def render_json(table: dict) -> str:
    """The file's text: stable key order, one key per line (readable diffs when Asterisk's API moves)."""
    return json.dumps(table, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m callgate_fakes.ari_simulator.swagger_gen API_DOCS_DIR > "
              "callgate_fakes/ari_simulator/ari_swagger.json", file=sys.stderr)
        return 2
    sys.stdout.write(render_json(derive_table(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
