"""Issue 17: the test doubles (callgate_fakes: ARI simulator, PayPal stand-in, SMTP sink) are no part
of the product. import-linter's contract ``fakes-out-of-product`` forbids the imports it can see;
these tests close what it cannot: a module loaded by name (importlib, __import__, runpy, an entry
point), and the proof at run time that importing the whole product loads none of the fakes.

The one exception is ``callgate.demo``, which runs the product against the fakes (`make demo`).
"""
from __future__ import annotations

import ast
import configparser
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("billing_core", "ari_app", "agi", "callgate_dialplan", "callgate")
EXEMPT = ROOT / "callgate" / "demo"
FAKES = "callgate_fakes"


def _product_sources() -> list[Path]:
    return sorted(p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py") if EXEMPT not in p.parents)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are module, class or function docstrings (prose may name the fakes)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_no_product_module_names_the_fakes_in_code():
    offenders = []
    for path in _product_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            hit = None
            if isinstance(node, ast.Import):
                hit = next((a.name for a in node.names if a.name.split(".")[0] == FAKES), None)
            elif isinstance(node, ast.ImportFrom):
                hit = node.module if (node.module or "").split(".")[0] == FAKES else None
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                hit = node.value if FAKES in node.value else None
            if hit:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {hit!r}")
    assert offenders == []


def test_nothing_of_the_product_imports_the_demo():
    """The demo may import the fakes only because nothing imports the demo (import-linter's
    demo-is-a-leaf lists callgate's parts; this also covers parts added later)."""
    offenders = []
    for path in _product_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            names += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            if any(n == "callgate.demo" or n.startswith("callgate.demo.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_no_entry_point_runs_the_fakes():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert "callgate" in scripts and FAKES not in scripts


def test_importing_the_whole_product_loads_none_of_the_fakes():
    """Every product module imported in a fresh interpreter: not one callgate_fakes module is loaded,
    by import or by name. Not imported: __main__ modules (they run a command), the demo, and the
    alembic migration scripts (alembic runs them by path, inside its own context)."""
    child = f"""
import importlib, json, pkgutil, sys
SKIP = ("callgate.demo", "billing_core.store.migrations")
names = []
for pkg in {PRODUCT!r}:
    mod = importlib.import_module(pkg)
    names.append(pkg)
    for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
        if info.name.endswith("__main__") or any(info.name == s or info.name.startswith(s + ".") for s in SKIP):
            continue
        importlib.import_module(info.name)
        names.append(info.name)
print(json.dumps({{"imported": len(names), "fakes": sorted(m for m in sys.modules if m.split(".")[0] == {FAKES!r})}}))
"""
    out = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] > 50
    assert result["fakes"] == []
