"""One configuration: a TOML file (``--config FILE`` / CALLGATE_CONFIG) with sections, every key
overridable by CALLGATE_<SECTION>_<KEY>, and the short names the components have always read
(CALLGATE_DB, CALLGATE_ARI_URL, CALLGATE_SMTP_HOST, …) still working.

Precedence: environment variable > file > built-in default.

Precedence with command-line options: an option (``callgate agi --listen``, ``--db``, …) > variable.

How components get their values: this module is the one place that reads the configuration.
:func:`load` validates file + environment (+ command-line options) against :data:`SCHEMA`, and the
builders at the end (:func:`gate_settings`, :func:`agi_settings`, :func:`sidecar_settings`,
:func:`smtp_settings`, :func:`web_settings`, :func:`paypal_config`, :func:`core_settings`, …) turn
the validated values into each component's frozen settings dataclass, which the command passes to
the component's constructor. Components never read the environment themselves (ari_app, agi and
billing_core must not import callgate, so their dataclasses live with them and are filled here;
tests/ops/test_one_config_path.py keeps environment readers out of them). Why: one parser means
every command, whole (`callgate run`) or part (`callgate gate|agi|sidecar|web`), accepts and refuses
exactly the same values, with the same message naming the variable or the file's key.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ari_app.announcements import DEFAULT_ANNOUNCEMENTS
from billing_core.domain.errors import InvalidInput
from billing_core.domain.identifiers import check_email, control_character, describe_control
from callgate.redaction import MASK, mask_url, redact, remember_secrets, url_password

if TYPE_CHECKING:
    from agi.settings import AgiSettings
    from ari_app.settings import GateSettings
    from billing_core.api import CoreSettings
    from billing_core.mail.render import Renderer
    from billing_core.mail.smtp import SmtpSettings
    from billing_core.sidecar.runner import SidecarSettings
    from callgate.paypal.config import PayPalConfig
    from callgate.web.app import WebSettings

_LISTEN_RE = re.compile(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):([0-9]{1,5})\Z")


class ConfigError(ValueError):
    """Every problem found, one per line, each naming the file/variable and the key.

    ``problems`` say where each value came from and which key it is (``env CALLGATE_SMTP_TLS
    ([smtp] tls): …``: `callgate config check`); ``lines`` are what a command prints when it refuses
    to start: the variable the operator set first, as the components have always named it
    (``CALLGATE_SMTP_TLS: must be one of … ([smtp] tls)``), or the file and its ``[section] key``."""

    def __init__(self, problems: list[str], lines: list[str] | None = None):
        self.problems = problems
        self.lines = problems if lines is None else lines
        super().__init__("\n".join(problems))


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a string")
    found = control_character(v)
    if found is not None:  # a value never needs one, and it would reach headers and log lines
        raise ValueError(f"must not contain {describe_control(found)}")
    return v


def _nonempty(v: Any) -> str:
    v = _str(v).strip()
    if not v:
        raise ValueError("must not be empty")
    return v


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError("must be a whole number")
        if isinstance(v, str):
            if not re.fullmatch(r"[+-]?[0-9]+", v.strip()):
                raise ValueError(f"must be a whole number (got {v!r})")
            v = int(v)
        if not isinstance(v, int):
            raise ValueError(f"must be a whole number (got {v!r})")
        if lo is not None and hi is not None and not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi} (got {v})")
        if lo is not None and v < lo:
            raise ValueError(f"must be ≥ {lo} (got {v})")
        if hi is not None and v > hi:
            raise ValueError(f"must be ≤ {hi} (got {v})")
        return v

    return conv


def _float(lo: float = 0, hi: float | None = None) -> Callable[[Any], float]:
    def conv(v: Any) -> float:
        if isinstance(v, bool):
            raise ValueError("must be a number")
        if isinstance(v, str):
            if not re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", v.strip()):
                raise ValueError(f"must be a number (got {v!r})")
            v = float(v)
        if not isinstance(v, (int, float)):
            raise ValueError(f"must be a number (got {v!r})")
        if v < lo:
            raise ValueError(f"must be ≥ {lo} (got {v})")
        if hi is not None and v > hi:
            raise ValueError(f"must be ≤ {hi} (got {v})")
        return float(v)

    return conv


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false (got {v!r})")


def _listen_conv(phrase: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        v = _nonempty(v)
        m = _LISTEN_RE.fullmatch(v)
        if not m or not (0 <= int(m.group(2)) <= 65535):
            raise ValueError(f"{phrase} host:port (got {v!r})")
        return v

    return conv


_listen = _listen_conv("must be")
# The client area's listener has always said "expected host:port" (WebSettings.listen_host_port).
_web_listen = _listen_conv("expected")


def _listen_or_off(v: Any) -> str:
    return "off" if _str(v).strip().lower() == "off" else _listen(v)


def host_port(listen: str, variable: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as (host, port); ValueError naming ``variable`` otherwise."""
    m = _LISTEN_RE.fullmatch(listen or "")
    if not m or not 0 <= int(m.group(2)) <= 65535:
        raise ValueError(f"{variable}: expected host:port (got {listen!r})")
    return m.group(1).strip("[]"), int(m.group(2))


def _url(*schemes: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        v = _nonempty(v)
        if not any(v.startswith(s + "://") or v.startswith(s + ":") for s in schemes):
            raise ValueError(f"must be a {' or '.join(schemes)} URL (got {v!r})")
        return v

    return conv


def _optional(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Empty means "not set" ("" stays the value; the builder picks the component's default)."""

    def optional(v: Any) -> Any:
        return "" if isinstance(v, str) and v.strip() == "" else conv(v)

    return optional


def _containing(placeholder: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        v = _nonempty(v)
        if placeholder not in v:
            raise ValueError(f"must contain {placeholder} (got {v!r})")
        return v

    return conv


def _http_url(v: Any) -> str:
    from urllib.parse import urlparse

    v = _url("http", "https")(v)
    parsed = urlparse(v)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"must be http(s)://host:port (got {v!r})")
    return v


def _db_url(v: Any) -> str:
    from billing_core.store.engine import DatabaseUrlError, parse_db_url

    v = _nonempty(v)
    try:
        parse_db_url(v)
    except DatabaseUrlError as exc:
        raise ValueError(str(exc)) from None
    return v


def _email(v: Any) -> str:
    try:
        return check_email(_nonempty(v), "email address", dotted_domain=False)
    except InvalidInput as exc:
        raise ValueError(str(exc).removeprefix("email address: ")) from None


def _choice(*options: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        v = _nonempty(v).lower()
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)} (got {v!r})")
        return v

    return conv


def _number_list(v: Any) -> str:
    items = v if isinstance(v, list) else _str(v).split(",")
    out = []
    for item in items:
        item = str(item).strip()
        if not item.isdigit():
            raise ValueError(f"must be a list of digit strings such as [\"911\", \"933\"] (got {item!r})")
        out.append(item)
    if not out:
        raise ValueError("must name at least one number")
    return ",".join(out)


def _region(v: Any) -> str:
    v = _nonempty(v).upper()
    if not re.fullmatch(r"[A-Z]{2}", v):
        raise ValueError(f"must be a two-letter region code such as CA (got {v!r})")
    return v


def _media_or_empty(v: Any) -> str:
    return "" if _str(v).strip() == "" else _media(v)


def _media(v: Any) -> str:
    v = _nonempty(v)
    if not re.fullmatch(r"(sound|recording|tone|digits|number):\S+", v):
        raise ValueError(f"must be an ARI media URI such as sound:cannot-complete-as-dialed (got {v!r})")
    return v


@dataclass(frozen=True)
class Key:
    """One configuration key."""

    conv: Callable[[Any], Any]
    default: Any
    env: tuple[str, ...] = ()
    """Extra (short) environment names, besides CALLGATE_<SECTION>_<KEY>; the first wins over the
    others, and names a command-line option's value in errors."""
    secret: bool = False
    doc: str = ""
    empty_is_unset: bool = True
    """An empty value means "not set" (the component keeps its default); False where empty is a
    meaningful value (an announcement of "" means: play nothing)."""


SCHEMA: dict[str, dict[str, Key]] = {
    "database": {
        "url": Key(_db_url, "sqlite:///./var/callgate.db", ("CALLGATE_DB",), doc="sqlite:///path or postgresql://user@host/db"),
    },
    "ari": {
        "enabled": Key(_bool, True, doc="run the ARI gate in `callgate run`"),
        "url": Key(_http_url, "http://127.0.0.1:8088", doc="Asterisk's HTTP server"),
        "user": Key(_nonempty, "callgate", doc="ari.conf user"),
        "password": Key(_str, "", secret=True, doc="ari.conf password"),
        "app": Key(_nonempty, "callgate", doc="Stasis application name"),
        "warning_seconds": Key(_int(0, 3600), 60, ("CALLGATE_WARNING_SECONDS",), doc="warning tone before the cut-off"),
        "trunk_template": Key(_containing("{number}"), "PJSIP/{number}@trunk", ("CALLGATE_TRUNK_TEMPLATE",), doc="outbound dial string"),
        "dial_timeout": Key(_int(1, 600), 30, ("CALLGATE_DIAL_TIMEOUT",), doc="seconds to ring the callee"),
        "pbx_id": Key(_str, "", ("CALLGATE_PBX_ID",), doc="overrides Asterisk's id in session keys (empty: from events)"),
        "inbound_template": Key(_containing("{endpoint}"), "PJSIP/{endpoint}", ("CALLGATE_INBOUND_TEMPLATE",), doc="dial string of a DID's phone"),
        "warning_media": Key(_media, "sound:beep", ("CALLGATE_WARNING_MEDIA",), doc="what the caller hears before the cut-off"),
        "announcement_timeout": Key(_float(0.1), 20.0, ("CALLGATE_ANNOUNCEMENT_TIMEOUT",),
                                    doc="longest wait for a refusal announcement to finish"),
        "refresh_seconds": Key(_float(0.05, 1.0), 1.0, ("CALLGATE_GATE_REFRESH_SECONDS",),
                               doc="how often live calls' cut-offs are re-read (≤ 1: the cut-off follows the money)"),
        "heartbeat_seconds": Key(_float(0.1), 10.0, ("CALLGATE_GATE_HEARTBEAT_SECONDS",),
                                 doc="how often the gate tells the core which calls are alive"),
        "extend_below_seconds": Key(_optional(_float(0)), "", ("CALLGATE_GATE_EXTEND_BELOW_SECONDS",),
                                    doc="the gate extends a hold itself below this much granted talk "
                                        "(empty: half a chunk; 0: never, the sidecar only)"),
    },
    "agi": {
        "enabled": Key(_bool, True, doc="run the FastAGI server in `callgate run`"),
        "listen": Key(_listen, "127.0.0.1:4573", doc="FastAGI host:port"),
        "read_timeout": Key(_float(0.1), 10.0, doc="seconds to wait for one line from Asterisk"),
        "session_timeout": Key(_float(1), 30.0, doc="seconds a whole AGI session may take"),
        "decision_timeout": Key(_float(0.1), 5.0, doc="seconds the billing core may take; then DENY billing_unavailable"),
        "pbx_id": Key(_str, "", doc="session key namespace of AGI calls (empty: agi@<hostname>)"),
        "max_connections": Key(_int(1, 1_000_000), 512, doc="FastAGI connections served at once; more are closed at once"),
    },
    "web": {
        "enabled": Key(_bool, True, doc="run the client area in `callgate run`"),
        "listen": Key(_web_listen, "127.0.0.1:8080", doc="client area host:port"),
        "public_url": Key(_str, "", doc="URL customers reach (PayPal return links); empty: http://<listen>, "
                                        "only when listen is a loopback address (else checkout is refused)"),
        "secret_key": Key(_str, "", secret=True, doc="signs PayPal return links (empty: random per process; "
                                                     "set it when several processes serve the client area)"),
        "secure_cookies": Key(_bool, False, doc="mark the session cookie Secure (behind HTTPS)"),
        "forwarded_for": Key(_bool, False, doc="trust X-Forwarded-For from a reverse proxy (sign-in rate limits per client IP)"),
        "signin_window_seconds": Key(_int(60, 86400), 900, doc="failed sign-ins are counted over this window"),
        "signin_max_per_email": Key(_int(1, 1000), 5, doc="failed sign-ins per email in the window, then refused"),
        "signin_max_per_ip": Key(_int(1, 100000), 20, doc="failed sign-ins per client address in the window, then refused"),
    },
    "log": {
        "format": Key(_choice("kv", "json"), "kv", doc="service log lines: kv (key=value) | json"),
        "level": Key(_choice("debug", "info", "warning", "error", "critical"), "info", doc="least severe level logged"),
    },
    "ops": {
        "listen": Key(_listen_or_off, "127.0.0.1:9464", doc="operator listener: /metrics and /healthz (keep it "
                                                           "private; \"off\" = none)"),
    },
    "sidecar": {
        "enabled": Key(_bool, True, doc="run the sidecar in `callgate run`"),
        "debit_interval": Key(_float(0.1), 10.0, ("CALLGATE_DEBIT_INTERVAL",), doc="seconds between passes"),
        "stale_seconds": Key(_float(1), 120.0, ("CALLGATE_STALE_SECONDS",), doc="a live call unseen this long is settled"),
        "chunk_seconds": Key(_int(1, 3600), 60, ("CALLGATE_CHUNK_SECONDS",), doc="talk bought per hold chunk"),
        "presuspend_days": Key(_float(0), 7.0, ("CALLGATE_PRESUSPEND_DAYS",), doc="depleted this long → pre-suspension"),
        "did_release_days": Key(_float(0), 7.0, ("CALLGATE_DID_RELEASE_DAYS",), doc="pre-suspended this long → DIDs released"),
        "stale_per_pass": Key(_int(1), 500, ("CALLGATE_STALE_PER_PASS",), doc="at most this many stale calls settled per pass"),
        "debit_lookahead": Key(_optional(_int(0)), "", ("CALLGATE_DEBIT_LOOKAHEAD",), doc="seconds of talk kept held ahead (empty: two intervals, ≥ 10)"),
        "set_based": Key(_bool, True, ("CALLGATE_SIDECAR_SET_BASED",), doc="batched debit pass (false: one transaction per call)"),
        "refusal_retention_days": Key(_float(1), 90.0, ("CALLGATE_REFUSAL_RETENTION_DAYS",),
                                      doc="refused-call records older than this are deleted"),
    },
    "smtp": {
        "host": Key(_nonempty, "127.0.0.1", doc="SMTP server"),
        "port": Key(_int(1, 65535), 25, doc="SMTP port"),
        "user": Key(_str, "", doc="SMTP user (empty: no auth)"),
        "password": Key(_str, "", secret=True, doc="SMTP password"),
        "tls": Key(_choice("none", "starttls", "tls"), "none", doc="none | starttls | tls"),
        "mail_from": Key(_email, "callgate@localhost", ("CALLGATE_MAIL_FROM",), doc="From: of alert emails"),
        "timeout": Key(_float(1), 30.0, doc="seconds to connect and for each SMTP reply"),
        "validate_certs": Key(_bool, True, doc="verify the server's TLS certificate"),
        "templates": Key(_str, "", ("CALLGATE_MAIL_TEMPLATES",), doc="directory of replacement email templates"),
        "operator_email": Key(_optional(_email), "", ("CALLGATE_OPERATOR_EMAIL",),
                              doc="operator address told of every fraud_suspected suspension (empty: none)"),
        "provider_name": Key(_str, "", ("CALLGATE_MAIL_PROVIDER_NAME",), doc="signature line of the emails"),
        "backoff_seconds": Key(_float(0), 30.0, ("CALLGATE_MAIL_BACKOFF_SECONDS",), doc="first retry delay after a failure"),
        "backoff_max_seconds": Key(_float(0), 3600.0, ("CALLGATE_MAIL_BACKOFF_MAX_SECONDS",), doc="longest retry delay"),
        "max_attempts": Key(_int(1), 50, ("CALLGATE_MAIL_MAX_ATTEMPTS",), doc="attempts before an email is marked failed"),
    },
    "paypal": {
        "client_id": Key(_str, "", doc="PayPal REST app client id"),
        "secret": Key(_str, "", ("CALLGATE_PAYPAL_SECRET",), secret=True, doc="PayPal REST app secret"),
        "webhook_id": Key(_str, "", secret=True, doc="the webhook id PayPal signs with"),
        "base_url": Key(_url("http", "https"), "https://api-m.sandbox.paypal.com", doc="sandbox, live or the stand-in"),
        "cert_hosts": Key(_str, "", doc="pinned origins of webhook signing certificates (empty: PayPal's own)"),
        "webhook_max_age": Key(_int(1, 86400), 300, doc="seconds a webhook transmission stays acceptable"),
        "timeout": Key(_float(1), 20.0, doc="seconds to wait for PayPal's REST API"),
    },
    "numbers": {
        "home_region": Key(_region, "CA", ("CALLGATE_HOME_REGION",), doc="region of national numbers"),
        "max_call_seconds": Key(_int(1, 86400), 14400, ("CALLGATE_MAX_CALL_SECONDS",), doc="longest call ever granted"),
    },
    "emergency": {
        "numbers": Key(_number_list, "911,933", ("CALLGATE_EMERGENCY_NUMBERS",), doc="never gated, never charged"),
    },
    "announcements": {
        reason: Key(_media_or_empty, default, (f"CALLGATE_ANNOUNCE_{reason.upper()}",),
                    doc=f"played when refused: {reason} (\"\" = nothing)", empty_is_unset=False)
        for reason, default in DEFAULT_ANNOUNCEMENTS.items()
    },
}


def env_names(section: str, key: str) -> tuple[str, ...]:
    """Every environment variable for a key, most specific first."""
    long = f"CALLGATE_{section.upper()}_{key.upper()}"
    spec = SCHEMA[section][key]
    return tuple(dict.fromkeys((*spec.env, long)))


@dataclass(frozen=True)
class Value:
    value: Any
    source: str
    """``default``, ``<file>: [section] key`` or ``env <NAME>``."""


@dataclass(frozen=True)
class Config:
    values: dict[str, dict[str, Value]] = field(default_factory=dict)
    file: str | None = None

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key].value

    def section(self, name: str) -> dict[str, Any]:
        return {k: v.value for k, v in self.values[name].items()}

    def secrets(self) -> set[str]:
        """Every secret value (secret keys, passwords inside URLs): log lines and errors mask them."""
        found: set[str] = set()
        for s, keys in self.values.items():
            for k, v in keys.items():
                if not isinstance(v.value, str) or not v.value:
                    continue
                if SCHEMA[s][k].secret:
                    found.add(v.value)
                password = url_password(v.value)
                if password:
                    found.add(password)
        return found

    def effective(self, *, mask: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for s, keys in self.values.items():
            out[s] = {}
            for k, v in keys.items():
                shown = v.value
                if mask and SCHEMA[s][k].secret and shown:
                    shown = MASK
                elif mask and isinstance(shown, str):
                    shown = mask_url(shown)  # the database URL's password, an ARI URL with user:password@
                out[s][k] = {"value": shown, "source": v.source}
        return out


Overrides = Mapping[tuple[str, str], tuple[str, Any]]
"""``{(section, key): (option, value)}``: command-line options (``--listen``) over everything else."""


def load(path: str | None = None, environ: Mapping[str, str] | None = None, overrides: Overrides | None = None
         ) -> Config:
    """Load and validate; raises :class:`ConfigError` listing every problem."""
    env = os.environ if environ is None else environ
    path = path or env.get("CALLGATE_CONFIG") or None
    data: dict[str, Any] = {}
    problems: list[str] = []
    lines: list[str] = []
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError([f"{path}: file not found"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
        for section, body in data.items():
            if section not in SCHEMA:
                problems.append(f"{path}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
            elif not isinstance(body, dict):
                problems.append(f"{path}: [{section}] must be a table")
            else:
                for key in body:
                    if key not in SCHEMA[section]:
                        problems.append(f"{path}: [{section}] unknown key {key!r} (known: {', '.join(SCHEMA[section])})")
        lines.extend(problems)
    overrides = overrides or {}
    for section, key in overrides:
        if key not in SCHEMA.get(section, {}):  # a programming error, not the operator's
            raise KeyError(f"no configuration key [{section}] {key}")
    values: dict[str, dict[str, Value]] = {}
    for section, keys in SCHEMA.items():
        values[section] = {}
        for key, spec in keys.items():
            raw, source, named = spec.default, "default", f"default [{section}] {key}"
            body = data.get(section) if isinstance(data.get(section), dict) else {}
            if key in body:
                raw, source = body[key], f"{path}: [{section}] {key}"
                named = source
            for name in env_names(section, key):
                if name in env and (env[name] != "" or not spec.empty_is_unset):
                    raw, source, named = env[name], f"env {name}", f"{name}: {{}} ([{section}] {key})"
                    break
            if (section, key) in overrides:
                option, raw = overrides[(section, key)]
                # An option stands in for its variable (`agi --listen` for CALLGATE_AGI_LISTEN), as
                # the commands have always said it.
                source, named = f"option {option}", f"{env_names(section, key)[0]}: {{}}"
            try:
                values[section][key] = Value(spec.conv(raw), source)
            except ValueError as exc:
                if source.startswith(("env ", "option ")):
                    where = f"{source} ([{section}] {key})"
                elif source == "default":
                    where = f"default [{section}] {key}"
                else:
                    where = source
                problems.append(f"{where}: {exc}")
                lines.append(named.format(exc) if "{}" in named else f"{named}: {exc}")
    if problems:
        raise ConfigError(problems, lines)
    return Config(values, path)


def load_or_exit(path: str | None, overrides: Overrides | None = None) -> Config:
    """For commands: load and validate, or print one ``error:`` line per problem and exit 1 (a
    typical mistake, one bad value, is one line naming the variable or the file's key)."""
    try:
        cfg = load(path, overrides=overrides)
    except ConfigError as exc:
        import click

        for line in exc.lines:
            click.echo(f"error: {redact(line)}", err=True)
        raise SystemExit(1) from None
    remember_secrets(cfg.secrets())
    return cfg


def secrets_in_file(path: str) -> list[str]:
    """``[section] key`` of each secret the file itself holds (a secret setting, or a URL with a
    password); unreadable or invalid files hold none as far as this check goes."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return []
    found = []
    for section, body in data.items():
        if section not in SCHEMA or not isinstance(body, dict):
            continue
        for key, value in body.items():
            spec = SCHEMA[section].get(key)
            if spec is None or not isinstance(value, str) or not value:
                continue
            if spec.secret or url_password(value):
                found.append(f"[{section}] {key}")
    return found


_warned_exposed: set[str] = set()


def warn_if_secrets_exposed(path: str | None) -> str | None:
    """At service start: one WARNING when the configuration file holds a secret and group or others
    may read it (returns the line, for tests). Once per file per process."""
    import logging
    import stat

    if not path or path in _warned_exposed:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    held = secrets_in_file(path)
    if not held:
        return None
    _warned_exposed.add(path)
    line = (f"configuration file {path} holds secrets ({', '.join(held)}) and is readable by "
            f"{'group and others' if mode & stat.S_IRWXO else 'its group'} (mode {stat.S_IMODE(mode):04o}): "
            f"run chmod 600 {path}")
    logging.getLogger("callgate.config").warning(line)
    return line


# --- Typed settings of each component, built from one validated Config ---------------------------
# The component packages own their frozen settings dataclasses (ari_app, agi and billing_core never
# import callgate); these builders are the one place that fills them. Components are imported when
# a builder runs, so `callgate config check` and the CLI's start stay light.


def core_settings(cfg: Config) -> "CoreSettings":
    from billing_core.api import CoreSettings

    return CoreSettings(
        home_region=cfg.get("numbers", "home_region"),
        emergency_numbers=frozenset(cfg.get("emergency", "numbers").split(",")),
        max_call_seconds=cfg.get("numbers", "max_call_seconds"),
        chunk_seconds=cfg.get("sidecar", "chunk_seconds"),
        presuspend_days=cfg.get("sidecar", "presuspend_days"),
        did_release_days=cfg.get("sidecar", "did_release_days"),
        operator_email=cfg.get("smtp", "operator_email") or None,
    )


def gate_settings(cfg: Config) -> "GateSettings":
    from ari_app.settings import GateSettings

    ari = cfg.section("ari")
    return GateSettings(
        app=ari["app"],
        trunk_template=ari["trunk_template"],
        inbound_template=ari["inbound_template"],
        dial_timeout=ari["dial_timeout"],
        warning_seconds=float(ari["warning_seconds"]),
        warning_media=ari["warning_media"],
        announcements={reason: media.strip() for reason, media in cfg.section("announcements").items()},
        announcement_timeout=ari["announcement_timeout"],
        refresh_interval=ari["refresh_seconds"],
        heartbeat_interval=ari["heartbeat_seconds"],
        extend_below_seconds=None if ari["extend_below_seconds"] == "" else ari["extend_below_seconds"],
        pbx_id=ari["pbx_id"].strip(),
    )


@dataclass(frozen=True)
class AriConnection:
    """Where the gate reaches Asterisk's REST interface and event stream."""

    url: str
    user: str
    password: str


def ari_connection(cfg: Config) -> AriConnection:
    return AriConnection(cfg.get("ari", "url").rstrip("/"), cfg.get("ari", "user"), cfg.get("ari", "password"))


def agi_settings(cfg: Config) -> "AgiSettings":
    from agi.settings import AgiSettings, default_pbx_id

    agi = cfg.section("agi")
    host, port = host_port(agi["listen"], "CALLGATE_AGI_LISTEN")
    return AgiSettings(host=host, port=port, read_timeout=agi["read_timeout"], session_timeout=agi["session_timeout"],
                       decision_timeout=agi["decision_timeout"], pbx_id=agi["pbx_id"].strip() or default_pbx_id(),
                       max_connections=agi["max_connections"])


def sidecar_settings(cfg: Config) -> "SidecarSettings":
    from billing_core.sidecar.outbox import OutboxSettings
    from billing_core.sidecar.runner import SidecarSettings

    side, smtp = cfg.section("sidecar"), cfg.section("smtp")
    return SidecarSettings(
        debit_interval=side["debit_interval"],
        stale_seconds=side["stale_seconds"],
        stale_per_pass=side["stale_per_pass"],
        presuspend_days=side["presuspend_days"],
        did_release_days=side["did_release_days"],
        lookahead_seconds=None if side["debit_lookahead"] == "" else side["debit_lookahead"],
        set_based_debits=side["set_based"],
        refusal_retention_days=side["refusal_retention_days"],
        outbox=OutboxSettings(backoff_base_seconds=smtp["backoff_seconds"],
                              backoff_max_seconds=smtp["backoff_max_seconds"], max_attempts=smtp["max_attempts"]),
    )


def smtp_settings(cfg: Config) -> "SmtpSettings":
    from billing_core.mail.smtp import SmtpSettings

    smtp = cfg.section("smtp")
    return SmtpSettings(host=smtp["host"], port=smtp["port"], user=smtp["user"], password=smtp["password"],
                        tls=smtp["tls"], mail_from=smtp["mail_from"], timeout=smtp["timeout"],
                        validate_certs=smtp["validate_certs"])


def mail_renderer(cfg: Config) -> "Renderer":
    """The alert emails' renderer: [smtp] templates, the signature and the client area's URL.
    TemplateProblem (naming CALLGATE_MAIL_TEMPLATES) when the directory does not exist."""
    from billing_core.mail.render import MailSite, Renderer, days_text

    site = MailSite(provider_name=cfg.get("smtp", "provider_name") or MailSite.provider_name,
                    client_area_url=cfg.get("web", "public_url"),
                    presuspend_days=days_text(cfg.get("sidecar", "presuspend_days")))
    return Renderer(cfg.get("smtp", "templates") or None, site)


def web_settings(cfg: Config) -> "WebSettings":
    from callgate.web.app import WebSettings
    from callgate.web.auth import AuthSettings

    web = cfg.section("web")
    return WebSettings(
        listen=web["listen"],
        public_url=web["public_url"].rstrip("/"),
        secret_key=web["secret_key"],
        secure_cookies=web["secure_cookies"],
        forwarded_for=web["forwarded_for"],
        did_release_days=cfg.get("sidecar", "did_release_days"),
        auth=AuthSettings(signin_window_seconds=web["signin_window_seconds"],
                          signin_max_per_email=web["signin_max_per_email"], signin_max_per_ip=web["signin_max_per_ip"]),
    )


def paypal_config(cfg: Config) -> "PayPalConfig":
    from callgate.paypal.config import DEFAULT_CERT_HOSTS, PayPalConfig

    pp = cfg.section("paypal")
    hosts = tuple(h.strip() for h in pp["cert_hosts"].split(",") if h.strip()) or DEFAULT_CERT_HOSTS
    return PayPalConfig(client_id=pp["client_id"].strip(), secret=pp["secret"].strip(),
                        webhook_id=pp["webhook_id"].strip(), base_url=pp["base_url"].rstrip("/"), cert_hosts=hosts,
                        webhook_max_age=float(pp["webhook_max_age"]), timeout=pp["timeout"])


def ops_listen(cfg: Config) -> tuple[str, int] | None:
    """(host, port) of the operator listener (/metrics, /healthz), or None when ``off``."""
    listen = cfg.get("ops", "listen")
    return None if listen == "off" else host_port(listen, "CALLGATE_OPS_LISTEN")


def example_toml() -> str:
    """The commented example (callgate.example.toml is generated from this; a test keeps them equal)."""
    lines = [
        "# callgate configuration — every key is optional; the values shown are the defaults.",
        "# Every key can be overridden by an environment variable CALLGATE_<SECTION>_<KEY>",
        "# (e.g. CALLGATE_ARI_URL); the short names shown after each key work too.",
        "# Check a file with: callgate --config callgate.toml config check",
        "",
    ]
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        for key, spec in keys.items():
            names = ", ".join(env_names(section, key))
            lines.append(f"# {spec.doc} ({names})")
            lines.append(f"{key} = {_toml_value(spec.default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["AriConnection", "Config", "ConfigError", "SCHEMA", "load", "load_or_exit", "example_toml", "InvalidInput",
           "core_settings", "gate_settings", "ari_connection", "agi_settings", "sidecar_settings", "smtp_settings",
           "mail_renderer", "web_settings", "paypal_config", "ops_listen"]
