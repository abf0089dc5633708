"""One retention pass: everything `retention_plan` finds due is erased, one
wearer and class at a time, each in its own transaction with its one audit
entry (``retention.erase``: the wearer's pseudonym, the class, the counts
per table, the SHA-256 over the erased rows, the rule's version, keep and
legal basis, the periods holds kept). A crash leaves each erasure whole or
absent: the rows and their entry commit together.

The audit link goes last and in three steps, so a crash cannot lose it:
the entry is committed with the ledger marking the link "pending", then the
wearer's pseudonym key is destroyed, then the ledger row is deleted; a pass
that finds "pending" destroys the key (again: it is idempotent) and
finishes.

Fixes (the store and the intake log) are planned but not yet erased by this
pass: `RetentionResult.skipped` says so for each one due.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from api.audit.log import commit_with_checkpoint
from api.db.models import RetentionLedger
from api.service.retention.erase_db import close_extracts, erase_casework
from api.service.retention.plan import Due, erased_classes, retention_plan
from api.service.retention.rules import Rules, load_rules
from trails.timestamps import format_ms

__all__ = ["RetentionResult", "run_retention", "rows_sha256"]


@dataclass
class RetentionResult:
    due: list[Due] = field(default_factory=list)
    erased: list[tuple[Due, dict[str, int], str]] = field(default_factory=list)  # (due, counts, rows SHA-256)
    skipped: list[tuple[Due, str]] = field(default_factory=list)  # (due, why)


def rows_sha256(rows: dict[str, list[dict]]) -> str:
    """SHA-256 over the erased rows: canonical JSON, tables in name order, rows as they were."""
    doc = {t: rows[t] for t in sorted(rows)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _detail(due: Due, rules: Rules, counts: dict[str, int], digest: str) -> dict:
    rule = rules.rules[due.data_class]
    return {"class": due.data_class, "counts": counts, "rows_sha256": digest, "rule_version": rules.version,
            "keep_days": rule.keep_days, "basis": rule.basis, "monitoring_ended": format_ms(due.ended_ms),
            "held": [[format_ms(lo), format_ms(hi)] for lo, hi in due.held]}


def _ledger(session, due: Due, mark: object | None) -> None:
    row = session.get(RetentionLedger, due.subject_id) or RetentionLedger(
        subject_id=due.subject_id, ended_ms=due.ended_ms, erased_json="{}")
    done = erased_classes(row)
    if mark is not None:
        done[due.data_class] = mark
    row.erased_json = json.dumps(done, sort_keys=True)
    session.add(row)


def _erase_db(factory, audit, rules: Rules, due: Due, now_ms: int) -> tuple[dict[str, int], str]:
    with factory() as session:
        rows = (erase_casework(session, due.subject_id, due.held) if due.data_class == "casework"
                else close_extracts(session, due.subject_id, due.held, now_ms=now_ms))
        counts, digest = {t: len(v) for t, v in sorted(rows.items())}, rows_sha256(rows)
        _ledger(session, due, None if due.held else now_ms)
        if counts:
            audit.append(session, action="retention.erase", actor=None, subject_id=due.subject_id, now_ms=now_ms,
                         detail=_detail(due, rules, counts, digest))
        commit_with_checkpoint(session, audit)
    return counts, digest


def _cut_link(factory, audit, rules: Rules, due: Due, now_ms: int) -> tuple[dict[str, int], str]:
    with factory() as session:
        pending = erased_classes(session.get(RetentionLedger, due.subject_id)).get("audit") == "pending"
        if not pending:
            _ledger(session, due, "pending")
            audit.append(session, action="retention.erase", actor=None, subject_id=due.subject_id, now_ms=now_ms,
                         detail=_detail(due, rules, {"pseudonym_key": 1}, "") | {"key_destroyed": True})
            commit_with_checkpoint(session, audit)
    audit.pseudonym_keys.destroy(due.subject_id)
    with factory() as session:
        row = session.get(RetentionLedger, due.subject_id)
        if row is not None:
            session.delete(row)
        session.commit()
    return {"pseudonym_key": 1}, ""


def run_retention(factory, audit, home: Path, *, now_ms: int, dry_run: bool = False) -> RetentionResult:
    """Plan, and unless `dry_run` erase, everything due at `now_ms` (module docstring)."""
    rules = load_rules(home)
    with factory() as session:
        plan = retention_plan(session, rules, now_ms=now_ms)
        session.rollback()
    result = RetentionResult(due=plan)
    for due in plan if not dry_run else ():
        if due.data_class == "fixes":
            result.skipped.append((due, "erasing fixes from the store and the intake log is not built yet"))
        elif due.data_class == "audit":
            if due.held:
                result.skipped.append((due, "a legal hold keeps the audit link"))
                continue
            result.erased.append((due, *_cut_link(factory, audit, rules, due, now_ms)))
        else:
            result.erased.append((due, *_erase_db(factory, audit, rules, due, now_ms)))
    return result
