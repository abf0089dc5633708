"""The escalation ladder as data, and the proposal it makes: pure functions,
no database (`api.service.escalation` feeds them and records decisions).

The inspection found warning letters issued "every fifth breach ... but this
was not consistent practice". Here the ladder is one JSON document
(HOME/escalation.json, validated; the built-in `DEFAULT_LADDER` without
one), named by its SHA-256 (RFC 8785) so each decision records the exact
ladder it was made under, and the proposal is a function of the wearer's
breaches, their excuses, the decisions already taken and the instant: the
same inputs give the same proposal, whatever their order.

Counting: a wearer's breaches (kind ``breach``, not withdrawn, not excused by
an accepted mitigation) that started in the rolling window ending at the
instant. The proposal is the highest step whose threshold the count has
reached and which has not been taken in the window; an "immediate" rule (a
record type at a priority, e.g. a P1 strap tamper) proposes its step for any
such breach newer than the wearer's last decision, before any count.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


from geofence.records import RECORD_TYPES
from api.service.home_documents import document_version, load_home_document
from trails.timestamps import DAY_MS

__all__ = ["DEFAULT_LADDER", "Ladder", "LadderError", "Counted", "Taken", "Proposal", "parse_ladder",
           "load_ladder", "propose"]

DEFAULT_LADDER: dict = {
    "window_days": 182,
    "steps": [{"step": "warning_letter_1", "at": 1}, {"step": "warning_letter_2", "at": 3},
              {"step": "refer_case_owner", "at": 5}],
    "immediate": [{"step": "refer_immediately", "types": ["strap_tamper"], "priority": 1}],
}
_STEP = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class LadderError(ValueError):
    """escalation.json is not a valid ladder; the message names the key."""


@dataclass(frozen=True)
class Ladder:
    window_ms: int
    steps: tuple[tuple[str, int], ...]  # (step, count at which it is due), count ascending
    immediate: tuple[tuple[str, frozenset[str], int], ...]  # (step, record types, priority)
    version: str  # SHA-256 of the document's RFC 8785 form
    document: dict


@dataclass(frozen=True)
class Counted:
    """One of the wearer's records, as the ladder sees it."""

    breach_id: str
    kind: str
    type: str
    priority: int
    start_ms: int
    withdrawn: bool
    excused: bool


@dataclass(frozen=True)
class Taken:
    step: str
    decided_ms: int


@dataclass(frozen=True)
class Proposal:
    step: str | None
    counted: tuple[str, ...]  # the breach ids that count, in id order
    why: str


def _fail(msg: str) -> LadderError:
    return LadderError(f"escalation.json: {msg}")


def parse_ladder(doc: object) -> Ladder:
    """A validated `Ladder` from a JSON document; `LadderError` naming what is wrong."""
    if not isinstance(doc, dict) or set(doc) - {"window_days", "steps", "immediate"}:
        raise _fail("must be an object with window_days, steps and (optionally) immediate")
    days = doc.get("window_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
        raise _fail(f"window_days must be a whole number of days from 1 to 3650, got {days!r}")
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        raise _fail("steps must be a non-empty list")
    out, last = [], 0
    for i, s in enumerate(steps):
        if not isinstance(s, dict) or set(s) != {"step", "at"} or not isinstance(s["step"], str) \
                or not _STEP.match(s["step"]) or not isinstance(s["at"], int) or isinstance(s["at"], bool):
            raise _fail(f"steps[{i}] must be {{\"step\": a lower_case name, \"at\": a whole number}}")
        if s["at"] <= last:
            raise _fail(f"steps[{i}].at must be greater than the step before's ({last}), got {s['at']}")
        last = s["at"]
        out.append((s["step"], s["at"]))
    immediate = []
    for i, r in enumerate(doc.get("immediate", [])):
        if not isinstance(r, dict) or set(r) != {"step", "types", "priority"} or not isinstance(r["step"], str) \
                or not _STEP.match(r["step"]) or not isinstance(r["types"], list) \
                or not set(r["types"]) <= set(RECORD_TYPES) or r["priority"] not in (1, 2, 3, 4):
            raise _fail(f"immediate[{i}] must be {{\"step\", \"types\": record types, \"priority\": 1-4}}")
        immediate.append((r["step"], frozenset(r["types"]), r["priority"]))
    names = [s for s, _ in out] + [s for s, _, _ in immediate]
    if len(set(names)) != len(names):
        raise _fail("step names must be unique")
    version = document_version(doc)
    return Ladder(window_ms=days * DAY_MS, steps=tuple(out), immediate=tuple(immediate), version=version,
                  document=doc)


def load_ladder(home: Path) -> Ladder:
    """HOME/escalation.json, or `DEFAULT_LADDER` without one."""
    return load_home_document(home, "escalation.json", DEFAULT_LADDER, parse_ladder, _fail)


def propose(ladder: Ladder, records: list[Counted], taken: list[Taken], now_ms: int) -> Proposal:
    """The next step for one wearer at `now_ms` (module docstring)."""
    lo = now_ms - ladder.window_ms
    counted = sorted((r for r in records if r.kind == "breach" and not r.withdrawn and not r.excused
                      and lo < r.start_ms <= now_ms), key=lambda r: r.breach_id)
    ids = tuple(r.breach_id for r in counted)
    last_decision = max((t.decided_ms for t in taken), default=None)
    for step, types, priority in ladder.immediate:
        hits = [r.breach_id for r in counted if r.type in types and r.priority == priority
                and (last_decision is None or r.start_ms > last_decision)]
        if hits:
            return Proposal(step, ids, f"{len(hits)} priority {priority} record(s) of type "
                                       f"{', '.join(sorted(types))} since the last decision: {', '.join(hits)}")
    recent = {t.step for t in taken if lo < t.decided_ms <= now_ms}
    reached = [(s, at) for s, at in ladder.steps if at <= len(counted)]
    for step, at in reversed(reached):
        if step not in recent:
            return Proposal(step, ids, f"{len(counted)} unexcused breach(es) in the last "
                                       f"{ladder.window_ms // DAY_MS} days reach {step} (due at {at})")
        break
    return Proposal(None, ids, f"{len(counted)} unexcused breach(es) in the last {ladder.window_ms // DAY_MS} days: "
                               "no step is due")
