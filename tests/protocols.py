"""Checks that a class satisfies a typing.Protocol structurally: every member the protocol names
exists, and every method accepts each parameter the protocol declares (same name, same kind, a default
where the protocol has one) and needs no parameter the protocol does not pass."""
from __future__ import annotations

import inspect
import typing


def protocol_members(protocol: type) -> list[str]:
    """The names a Protocol declares (methods and annotated attributes; 3.11 has no get_protocol_members)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n in protocol.__dict__ if not n.startswith("_")}
    return sorted(names)


def assert_satisfies(cls: type, protocol: type, *, skip: set[str] = frozenset()) -> None:
    for name in protocol_members(protocol):
        if name in skip:
            continue
        wanted = getattr(protocol, name, None)
        if not callable(wanted):  # a data member: the instance sets it (the callers check an instance)
            continue
        have = getattr(cls, name, None)
        assert callable(have), f"{cls.__name__} has no method {name}"
        assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(wanted), f"{name}: sync/async differ"
        want_params = dict(inspect.signature(wanted).parameters)
        have_params = dict(inspect.signature(have).parameters)
        for pname, p in want_params.items():
            assert pname in have_params, f"{cls.__name__}.{name} lacks parameter {pname}"
            q = have_params[pname]
            assert q.kind == p.kind, f"{cls.__name__}.{name}({pname}): {q.kind} is not {p.kind}"
            if p.default is not inspect.Parameter.empty:
                assert q.default == p.default, f"{cls.__name__}.{name}({pname}): default {q.default!r} is not {p.default!r}"
        for pname, q in have_params.items():
            if pname not in want_params:
                assert q.default is not inspect.Parameter.empty or q.kind in (q.VAR_POSITIONAL, q.VAR_KEYWORD), \
                    f"{cls.__name__}.{name} needs {pname}, which the port never passes"
