"""Rate-deck CSV rows → :class:`Rate` records, strictly (pure: the caller opens the file).

Columns: ``prefix,description,rate_per_min,connect_fee,initial_increment,increment``. The first
bad row stops the import with its line number and column, so an operator can fix the file; nothing is
written until every row is good.
"""
from __future__ import annotations

import csv
from typing import Callable, Iterable

from .identifiers import control_character, describe_control
from .money import RATE_DECIMALS, AmountError, parse_amount
from .rating import Rate

COLUMNS = ("prefix", "description", "rate_per_min", "connect_fee", "initial_increment", "increment")
MAX_PREFIX_DIGITS = 15


class DeckError(ValueError):
    """A bad rate deck; ``line`` is 1-based as an editor shows it."""

    def __init__(self, line: int, column: str | None, message: str):
        self.line = line
        self.column = column
        where = f"line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {message}")


def parse_deck(lines: Iterable[str], *, progress: Callable[[int], None] | None = None) -> list[Rate]:
    """Parse a whole deck; raises :class:`DeckError` at the first problem."""
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
    out: list[Rate] = []
    seen: dict[str, int] = {}
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
            prefix = row[idx["prefix"]].strip()
            if not prefix.isdigit() or not prefix.isascii():
                raise DeckError(line, "prefix", f"must be digits only (got {prefix!r})")
            if len(prefix) > MAX_PREFIX_DIGITS:
                raise DeckError(line, "prefix", f"has more than {MAX_PREFIX_DIGITS} digits")
            if prefix in seen:
                raise DeckError(line, "prefix", f"duplicate prefix {prefix} (first on line {seen[prefix]})")
            seen[prefix] = line
            amounts = {}
            for col in ("rate_per_min", "connect_fee"):
                try:
                    amounts[col] = parse_amount(row[idx[col]], field=col, decimals=RATE_DECIMALS, allow_negative=False)
                except AmountError as exc:
                    raise DeckError(line, col, exc.why + f" (got {row[idx[col]]!r})") from None
            incs = {}
            for col in ("initial_increment", "increment"):
                text = row[idx[col]].strip()
                if not text.isdigit() or not text.isascii() or int(text) <= 0:
                    raise DeckError(line, col, f"must be a whole number of seconds > 0 (got {text!r})")
                if int(text) > 86_400:
                    raise DeckError(line, col, f"is longer than a day (got {text!r})")
                incs[col] = int(text)
            out.append(Rate(prefix, amounts["rate_per_min"], amounts["connect_fee"], incs["initial_increment"],
                            incs["increment"], row[idx["description"]].strip()[:200]))
            if progress is not None:
                progress(1)
    except csv.Error as exc:
        raise DeckError(reader.line_num or line, None, f"not valid CSV: {exc}") from None
    if not out:
        raise DeckError(line, None, "the deck has no rate rows")
    return out


def _refuse_control_characters(line: int, names: list[str], row: list[str]) -> None:
    """Every cell, before any is stripped or parsed: a NUL or an escape sequence in a description
    would be stored and shown to operators and customers."""
    for name, cell in zip(names, row):
        found = control_character(cell)
        if found is not None:
            raise DeckError(line, name, f"must not contain {describe_control(found)}")
