"""CI lints every dialplan file of asterisk-conf/ with asterisklint and fails on any finding."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "asterisk-conf"
ASTERISKLINT = Path(sys.executable).parent / "asterisklint"
# extensions_custom.conf is a FreePBX fragment: lint it the way FreePBX loads it, #included from
# an extensions.conf that has the [general]/[globals] head and a [from-internal] including
# [from-internal-custom].
FREEPBX_HEAD = "[general]\nstatic=yes\n\n[globals]\n\n#include extensions_custom.conf\n\n[from-internal]\ninclude => from-internal-custom\n"


def lint(path: Path) -> subprocess.CompletedProcess:
    assert ASTERISKLINT.exists(), "asterisklint is a test dependency (setup.cfg [test]); install it"
    return subprocess.run([str(ASTERISKLINT), "dialplan-check", path.name], cwd=path.parent, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "ALINT_IGNORE": ""})


def freepbx_tree(tmp_path: Path, custom_text: str) -> Path:
    (tmp_path / "extensions_custom.conf").write_text(custom_text)
    (tmp_path / "extensions.conf").write_text(FREEPBX_HEAD)
    return tmp_path / "extensions.conf"


def test_extensions_conf_has_no_findings(tmp_path):
    shutil.copy(CONF / "extensions.conf", tmp_path / "extensions.conf")
    result = lint(tmp_path / "extensions.conf")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_extensions_custom_conf_has_no_findings(tmp_path):
    result = lint(freepbx_tree(tmp_path, (CONF / "extensions_custom.conf").read_text()))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("name", ["extensions.conf", "extensions_custom.conf"])
def test_the_lint_does_catch_mistakes(tmp_path, name):
    """Guard against a lint that silently passes: a misspelt app and a Goto to a missing label."""
    text = (CONF / name).read_text().replace("Hangup(34)", "Hangpu(34)", 1).replace("?denied)", "?denyed)", 1)
    if name == "extensions.conf":
        (tmp_path / name).write_text(text)
        target = tmp_path / name
    else:
        target = freepbx_tree(tmp_path, text)
    result = lint(target)
    out = result.stdout + result.stderr
    assert result.returncode == 1
    assert "E_APP_MISSING: app 'Hangpu' does not exist" in out
    assert "denyed" in out
