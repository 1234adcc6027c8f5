"""Rate-deck CSV rows → :class:`Rate` records, strictly (pure: the caller opens the file).

Columns: ``prefix,description,rate_per_min,connect_fee,initial_increment,increment``. The first
bad row stops the import with its line number and column, so an operator can fix the file; nothing is
written until every row is good.

Optional columns ``days,start,end`` (issue 19, read by :func:`parse_deck_rows`): when a row applies
(billing_core.domain.rating.Period). ``days`` is ``mon-fri``, ``sat``, ``sun`` or a list such as
``mon,wed,fri`` (ranges and names may mix; blank = every day); ``start`` and ``end`` are ``HH:MM``,
both blank (the whole day) or both given, ``end`` may be ``24:00``. A prefix may then appear on
several rows, which must cover the week exactly once. Without the columns a deck reads as before.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .identifiers import control_character, describe_control
from .money import RATE_DECIMALS, AmountError, parse_amount
from .rating import ALWAYS, DAY_NAMES, MINUTES_PER_DAY, Period, Rate, coverage_problem

COLUMNS = ("prefix", "description", "rate_per_min", "connect_fee", "initial_increment", "increment")
PERIOD_COLUMNS = ("days", "start", "end")
"""Optional: a deck without them has one period (always) a prefix."""
MAX_PREFIX_DIGITS = 15


class DeckError(ValueError):
    """A bad rate deck; ``line`` is 1-based as an editor shows it."""

    def __init__(self, line: int, column: str | None, message: str):
        self.line = line
        self.column = column
        where = f"line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class DeckRow:
    """One rate row of a deck with its period and the line it starts on."""

    line: int
    rate: Rate
    period: Period


def parse_deck(lines: Iterable[str], *, progress: Callable[[int], None] | None = None) -> list[Rate]:
    """Parse a whole deck; raises :class:`DeckError` at the first problem. (One row a prefix:
    period columns, if any, are not read here; see :func:`parse_deck_rows`.)"""
    return [row.rate for row in _parse(lines, progress=progress, periods=False)]


def parse_deck_rows(lines: Iterable[str], *, progress: Callable[[int], None] | None = None) -> list[DeckRow]:
    """Parse a whole deck with its optional ``days,start,end`` columns; raises :class:`DeckError`
    at the first bad row, then at the first prefix whose periods leave a gap in the week or
    overlap (:func:`check_prefix_periods`). A deck without the columns gives the rows of
    :func:`parse_deck`, each :data:`ALWAYS`, with the same errors."""
    rows = _parse(lines, progress=progress, periods=True)
    check_deck_periods(rows)
    return rows


def check_deck_periods(rows: Sequence[DeckRow]) -> None:
    """Every prefix's periods cover the week exactly once; else :class:`DeckError` at the first
    line (of all prefixes) to fix. A deck repeats a few patterns (peak/off-peak/weekend) over its
    prefixes: a pattern that covers the week is checked once."""
    by_prefix: dict[str, list[tuple[int, Period]]] = {}
    for row in rows:
        by_prefix.setdefault(row.rate.prefix, []).append((row.line, row.period))
    covering: set[tuple[Period, ...]] = set()
    problems = []
    for prefix, periods in by_prefix.items():
        if len(periods) == 1 and periods[0][1] == ALWAYS:
            continue  # every old deck's prefix: nothing to check
        pattern = tuple(p for _, p in sorted(periods, key=lambda r: r[0]))
        if pattern in covering:
            continue
        try:
            check_prefix_periods(prefix, periods)
        except DeckError as exc:
            problems.append(exc)
        else:
            covering.add(pattern)
    if problems:
        raise min(problems, key=lambda e: e.line)


def _parse(lines: Iterable[str], *, progress: Callable[[int], None] | None, periods: bool) -> list[DeckRow]:
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise DeckError(1, None, f"the file is empty; expected a header {','.join(COLUMNS)}") from None
    except csv.Error as exc:
        raise DeckError(1, None, f"not valid CSV: {exc}") from None
    names = [h.strip().lower() for h in header]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    _refuse_control_characters(1, [f"{i + 1}" for i in range(len(names))], names)
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DeckError(1, missing[0], f"header lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise DeckError(1, sorted(dupes)[0], "column appears twice in the header")
    idx = {c: names.index(c) for c in COLUMNS}
    # With period columns a prefix may repeat (one row a period); the coverage check judges them.
    period_idx = {c: names.index(c) for c in PERIOD_COLUMNS if c in names} if periods else {}
    # parse_deck reads one row a prefix (plan import reads periods with parse_deck_rows): a filled
    # period cell would be read as "always" without a word, so it is refused instead.
    unread_idx = {c: names.index(c) for c in PERIOD_COLUMNS if c in names} if not periods else {}
    out: list[DeckRow] = []
    seen: dict[str, int] = {}
    # parsed cell texts (only good ones are kept, so every error still names its own line)
    amount_cache: dict[str, int] = {}
    period_cache: dict[tuple[str, ...], Period] = {}
    line = record_end = reader.line_num
    try:
        for row in reader:
            # The line the record starts on (a quoted cell may span lines; editors show the start).
            line, record_end = record_end + 1, reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise DeckError(line, None, f"has {len(row)} fields, the header has {len(names)}")
            _refuse_control_characters(line, names, row)
            for col, i in unread_idx.items():
                if row[i].strip():
                    raise DeckError(line, col, "rates by weekday or time of day are not supported by plan import "
                                               "yet: leave days, start and end blank (or drop the columns)")
            prefix = row[idx["prefix"]].strip()
            if not prefix.isdigit() or not prefix.isascii():
                raise DeckError(line, "prefix", f"must be digits only (got {prefix!r})")
            if len(prefix) > MAX_PREFIX_DIGITS:
                raise DeckError(line, "prefix", f"has more than {MAX_PREFIX_DIGITS} digits")
            if prefix in seen and not period_idx:
                raise DeckError(line, "prefix", f"duplicate prefix {prefix} (first on line {seen[prefix]})")
            seen.setdefault(prefix, line)
            amounts = {}
            for col in ("rate_per_min", "connect_fee"):
                text = row[idx[col]]
                value = amount_cache.get(text)
                if value is None:
                    try:
                        value = parse_amount(text, field=col, decimals=RATE_DECIMALS, allow_negative=False)
                    except AmountError as exc:
                        raise DeckError(line, col, exc.why + f" (got {text!r})") from None
                    amount_cache[text] = value
                amounts[col] = value
            incs = {}
            for col in ("initial_increment", "increment"):
                text = row[idx[col]].strip()
                if not text.isdigit() or not text.isascii() or int(text) <= 0:
                    raise DeckError(line, col, f"must be a whole number of seconds > 0 (got {text!r})")
                if int(text) > 86_400:
                    raise DeckError(line, col, f"is longer than a day (got {text!r})")
                incs[col] = int(text)
            period = ALWAYS
            if period_idx:
                cells = tuple(row[i] if (i := period_idx.get(c)) is not None else "" for c in PERIOD_COLUMNS)
                period = period_cache.get(cells)
                if period is None:  # a deck repeats a few periods: each text parsed once (good ones)
                    period = period_cache[cells] = parse_period_cells(line, *cells)
            out.append(DeckRow(line, Rate(prefix, amounts["rate_per_min"], amounts["connect_fee"],
                                          incs["initial_increment"], incs["increment"],
                                          row[idx["description"]].strip()[:200]), period))
            if progress is not None:
                progress(1)
    except csv.Error as exc:
        raise DeckError(reader.line_num or line, None, f"not valid CSV: {exc}") from None
    if not out:
        raise DeckError(line, None, "the deck has no rate rows")
    return out


_CLOCK_RE = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")


def _parse_minute(line: int, column: str, text: str) -> int:
    m = _CLOCK_RE.match(text)
    if not m:
        raise DeckError(line, column, f"must be a time HH:MM such as 08:00 (got {text!r})")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise DeckError(line, column, f"is not a time of day 00:00-24:00 (got {text!r})")
    return hours * 60 + minutes


def _parse_days(line: int, text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise DeckError(line, "days", f"has an empty day name (got {text!r})")
        first, sep, last = (p.strip() for p in part.partition("-"))
        ends = []
        for name in (first, last) if sep else (first,):
            if name not in DAY_NAMES:
                raise DeckError(line, "days", f"{name!r} is not a day; expected {', '.join(DAY_NAMES)}, a range "
                                              f"such as mon-fri or a list such as mon,wed,fri (got {text!r})")
            ends.append(DAY_NAMES.index(name))
        if ends[0] > ends[-1]:
            raise DeckError(line, "days", f"the range {first}-{last} runs backwards past sunday; write it as "
                                          f"{first}-sun,mon-{last} (got {text!r})")
        for d in range(ends[0], ends[-1] + 1):
            if d in days:
                raise DeckError(line, "days", f"names {DAY_NAMES[d]} twice (got {text!r})")
            days.add(d)
    return frozenset(days)


def parse_period_cells(line: int, days: str, start: str, end: str) -> Period:
    """The ``days``, ``start`` and ``end`` cells of a deck row → its :class:`Period`; a bad cell
    raises :class:`DeckError` naming the line and that column. Blank days = every day; start and
    end both blank = the whole day. Names are case-insensitive, spaces around them ignored."""
    days_text, start_text, end_text = days.strip().lower(), start.strip(), end.strip()
    weekdays = _parse_days(line, days_text) if days_text else ALWAYS.days
    if not start_text and not end_text:
        return Period(weekdays)
    if not start_text:
        raise DeckError(line, "start", f"is blank but end is {end_text!r}: give both, or neither for the whole day")
    if not end_text:
        raise DeckError(line, "end", f"is blank but start is {start_text!r}: give both, or neither for the whole day")
    first = _parse_minute(line, "start", start_text)
    if first == MINUTES_PER_DAY:
        raise DeckError(line, "start", "cannot be 24:00: a period starts at 23:59 at the latest")
    last = _parse_minute(line, "end", end_text)
    if last <= first:
        raise DeckError(line, "end", f"must be later than start {start_text} (got {end_text!r}); a period never "
                                     "wraps past midnight: write two rows, one ending at 24:00")
    return Period(weekdays, first, last)


def check_prefix_periods(prefix: str, rows: Sequence[tuple[int, Period]]) -> None:
    """The periods of one prefix, with their lines, must cover the week exactly once; else
    :class:`DeckError` at the line and column to fix (rating.coverage_problem says which)."""
    ordered = sorted(rows, key=lambda r: r[0])
    problem = coverage_problem([p for _, p in ordered], [f"line {n}" for n, _ in ordered])
    if problem is not None:
        raise DeckError(ordered[problem.index][0], problem.column, f"prefix {prefix}: {problem.message}")


def _refuse_control_characters(line: int, names: list[str], row: list[str]) -> None:
    """Every cell, before any is stripped or parsed: a NUL or an escape sequence in a description
    would be stored and shown to operators and customers."""
    for name, cell in zip(names, row):
        found = control_character(cell)
        if found is not None:
            raise DeckError(line, name, f"must not contain {describe_control(found)}")
