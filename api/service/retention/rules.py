"""The retention rules: HOME/retention.json, validated, with the legal basis
written beside each rule, and documented defaults without one.

Every rule counts from the end of the wearer's monitoring (their last
assignment's end, which a review's ``end_monitoring`` sets), never from the
data's own date: the High Court (ADL v SSHD [2024] EWHC 994 (Admin)) tied
lawful retention to the basis for the condition, and the ICO (February
2024) found no clear retention rule at all. The defaults are choices for a
DPO to confirm, not law:

- ``fixes`` (raw fixes and the intake log): 6 years, the reported practice
  (tags' data kept six years after the tag comes off); shorter is likely
  to be more defensible after ADL.
- ``casework`` (breach records, their history, mitigations, letters,
  reviews, welfare notes): 6 years, so that the records stay with the
  fixes they rest on.
- ``extracts`` (released trail extracts): 1 year: an extract is a copy
  made for one purpose; the request and its audit entries stay.
- ``audit`` (the link from the audit log to the person): 7 years, a year
  after everything else, so the log can still evidence the erasures; then
  the wearer's pseudonym key is destroyed and the log, which stays
  append-only, can no longer be read as about them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from api.service.home_documents import document_version, load_home_document
from trails.timestamps import DAY_MS

__all__ = ["CLASSES", "DEFAULT_RULES", "Rule", "Rules", "RetentionError", "parse_rules", "load_rules"]

#: The data classes, in the order erasure goes through them.
CLASSES = ("fixes", "extracts", "casework", "audit")
_YEAR = 365.25
DEFAULT_RULES: dict = {"rules": {
    "fixes": {"keep_days": round(6 * _YEAR), "basis": "Reported Home Office practice: trail data kept six years "
              "after the tag is removed (to be confirmed by the DPO; ADL v SSHD [2024] EWHC 994 (Admin) found "
              "retention unlawful once the basis for the condition had ended)."},
    "casework": {"keep_days": round(6 * _YEAR), "basis": "Kept as long as the fixes the records rest on, for "
                 "complaints, appeals and proceedings (UK GDPR art. 5(1)(e); DPA 2018 s.39)."},
    "extracts": {"keep_days": 365, "basis": "An extract is a copy made for one approved purpose; one year "
                 "covers its use and any challenge to the disclosure (DPA 2018 s.39)."},
    "audit": {"keep_days": round(7 * _YEAR), "basis": "Consultation and disclosure logs (DPA 2018 s.62) kept a "
              "year beyond the data so erasures can be evidenced; then the pseudonym key is destroyed."},
}}


class RetentionError(ValueError):
    """retention.json is not valid: the message names the key."""


@dataclass(frozen=True)
class Rule:
    data_class: str
    keep_days: int
    basis: str


@dataclass(frozen=True)
class Rules:
    rules: dict[str, Rule]
    version: str  # SHA-256 of the canonical JSON: each erasure records the version it was made under

    def keep_ms(self, data_class: str) -> int:
        return self.rules[data_class].keep_days * DAY_MS


def _fail(msg: str) -> RetentionError:
    return RetentionError(f"retention.json: {msg}")


def parse_rules(doc: object) -> Rules:
    """Validate a retention document: every class present, a whole number of days (at least 1) and a legal
    basis of at least 20 characters each; no other key."""
    if not isinstance(doc, dict) or set(doc) != {"rules"} or not isinstance(doc["rules"], dict):
        raise _fail('must be {"rules": {class: {"keep_days": N, "basis": "..."}}}')
    given = doc["rules"]
    if set(given) != set(CLASSES):
        raise _fail(f"rules must name exactly the classes {', '.join(CLASSES)}; got {', '.join(sorted(given))}")
    out = {}
    for name in CLASSES:
        r = given[name]
        if not isinstance(r, dict) or set(r) != {"keep_days", "basis"}:
            raise _fail(f"rules.{name} must have exactly keep_days and basis")
        days, basis = r["keep_days"], r["basis"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36_500:
            raise _fail(f"rules.{name}.keep_days must be a whole number of days from 1 to 36500, got {days!r}")
        if not isinstance(basis, str) or len(basis.strip()) < 20:
            raise _fail(f"rules.{name}.basis must state the legal basis (at least 20 characters)")
        out[name] = Rule(name, days, basis.strip())
    if out["audit"].keep_days < max(out[c].keep_days for c in CLASSES if c != "audit"):
        raise _fail("rules.audit.keep_days must be at least every other class's: the log evidences their erasure")
    return Rules(out, document_version(doc))


def load_rules(home: Path) -> Rules:
    """HOME/retention.json, or the defaults without one."""
    return load_home_document(home, "retention.json", DEFAULT_RULES, parse_rules, _fail)
