import io
import json
import logging

from callgate.logs import setup_logging


def _emit(fmt):
    buf = io.StringIO()
    setup_logging(fmt, "INFO", stream=buf)
    logging.getLogger("callgate.gate").info("call allowed", extra={"session": "abc123", "account": "acme", "granted_seconds": 60})
    logging.getLogger("callgate.gate").info("with space", extra={"reason": "two words"})
    return buf.getvalue().splitlines()


def test_key_value_lines_carry_the_session():
    first, second = _emit("kv")
    assert "level=info" in first and 'msg="call allowed"' in first
    assert "session=abc123" in first and "account=acme" in first and "granted_seconds=60" in first
    assert 'reason="two words"' in second


def test_json_lines():
    first, _ = _emit("json")
    data = json.loads(first)
    assert data["session"] == "abc123" and data["granted_seconds"] == 60 and data["msg"] == "call allowed"


def test_a_value_with_control_characters_cannot_forge_a_line_or_an_escape():
    buf = io.StringIO()
    setup_logging("kv", "INFO", stream=buf)
    logging.getLogger("callgate.web").warning("sign-in for %s", "x@y.test\nts=0 level=error msg=forged",
                                              extra={"channel": "PJSIP/a\x1b[2J\u2028\x85-1"})
    [line] = buf.getvalue().splitlines()
    assert "\x1b" not in line and "\u2028" not in line and "\x85" not in line
    assert '\\nts=0 level=error msg=forged' in line and "\\u001b[2J\\u2028\\u0085" in line
