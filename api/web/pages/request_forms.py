"""The console's access-request forms read into what the service takes.

Times are entered as London date and time (`api.web.london_input`); a time
that happened twice needs its occurrence, and the form asks for it. Every
other check of the fields is the API's own input model
(`api.http.schemas.AccessRequestCreate`, `DecisionCreate`,
`IdentityCheckCreate`), so the console accepts exactly what the API accepts;
its messages are attached to the form's fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from api.access.requests import Narrowing, NewRequest
from api.access.request_input import AccessRequestCreate, DecisionCreate, parse_ts
from api.web.london_input import LocalTimeError, is_ambiguous, parse_london
from trails.timestamps import format_ms

__all__ = ["FormErrors", "read_when", "read_new_request", "read_decision", "NEW_FIELDS"]

#: The fields of the new-request form, as the page keeps them between steps.
NEW_FIELDS = ("subject_id", "kind", "ground", "start_date", "start_time", "start_occurrence", "end_date",
              "end_time", "end_occurrence", "justification", "necessity", "breach", "case_reference", "urgency",
              "respond_by_date", "respond_by_time", "respond_by_occurrence")

_FIELD_OF = {"start": "start_date", "end": "end_date", "respond_by": "respond_by_date", "reference": "case_reference"}


@dataclass
class FormErrors:
    """Messages per form field (the field's id), in the order found; `ambiguous`
    names the time fields that need their occurrence chosen, with both readings."""

    messages: dict[str, str] = field(default_factory=dict)
    ambiguous: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.messages.setdefault(name, message)

    def __bool__(self) -> bool:
        return bool(self.messages)


def read_when(form: dict[str, str], prefix: str, label: str, errors: FormErrors, *,
              required: bool = True) -> int | None:
    """The instant of fields ``{prefix}_date``, ``{prefix}_time``, ``{prefix}_occurrence``."""
    d, t = form.get(f"{prefix}_date", "").strip(), form.get(f"{prefix}_time", "").strip()
    if not d and not t:
        if required:
            errors.add(f"{prefix}_date", f"Enter the {label} date and time (UK time)")
        return None
    try:
        amb = is_ambiguous(d, t, label)
        occurrence = form.get(f"{prefix}_occurrence", "")
        if amb is not None and not occurrence:
            from api.service.london import london_time

            errors.ambiguous[prefix] = (london_time(amb.first_ms).text, london_time(amb.second_ms).text)
            errors.add(f"{prefix}_date", f"{label.capitalize()}: {t} on {d} happened twice, when the clocks went back "
                                         f"from BST to GMT. Choose which one you mean.")
            return None
        return parse_london(d, t, occurrence or "first", what=label.capitalize())
    except LocalTimeError as exc:
        errors.add(f"{prefix}_date", str(exc))
        return None


def _pydantic(exc: ValidationError, errors: FormErrors) -> None:
    for e in exc.errors():
        name = str(e["loc"][0]) if e["loc"] else "form"
        errors.add(_FIELD_OF.get(name, name), f"{name.replace('_', ' ').capitalize()}: {e['msg']}")


def read_new_request(form: dict[str, str]) -> tuple[NewRequest | None, FormErrors]:
    """The request the form asks for, or None and what is wrong with it."""
    errors = FormErrors()
    start = read_when(form, "start", "start", errors)
    end = read_when(form, "end", "end", errors)
    respond_by = read_when(form, "respond_by", "respond-by", errors, required=False)
    breach, case_ref = form.get("breach", "").strip(), form.get("case_reference", "").strip()
    if breach and case_ref:
        errors.add("case_reference", "Give either a breach of the wearer or a case reference, not both")
    body = {"subject_id": form.get("subject_id", "").strip(), "kind": form.get("kind", ""),
            "ground": form.get("ground", ""), "justification": form.get("justification", ""),
            "necessity": form.get("necessity", ""), "reference": (breach or case_ref) or None,
            "urgency": form.get("urgency", "routine") or "routine",
            "start": format_ms(start) if start is not None else "1970-01-01T00:00:00Z",
            "end": format_ms(end) if end is not None else "1970-01-01T00:00:01Z",
            "respond_by": format_ms(respond_by) if respond_by is not None else None}
    try:
        checked = AccessRequestCreate(**body)
    except ValidationError as exc:
        _pydantic(exc, errors)
        return None, errors
    if errors:
        return None, errors
    return NewRequest(subject_id=checked.subject_id, kind=checked.kind, ground=checked.ground,
                      start_ms=parse_ts(checked.start), end_ms=parse_ts(checked.end),
                      justification=checked.justification, necessity=checked.necessity,
                      reference=checked.reference, urgency=checked.urgency, respond_by_ms=respond_by), errors


def read_decision(form: dict[str, str]) -> tuple[Narrowing | None, FormErrors]:
    """The decision the form asks for: the period fields count only for partial data."""
    errors = FormErrors()
    outcome = form.get("outcome", "")
    start = end = None
    if outcome == "partial_data_provided":
        start = read_when(form, "start", "start of the period provided", errors)
        end = read_when(form, "end", "end of the period provided", errors)
    body = {"outcome": outcome, "reason": form.get("reason", ""),
            "start": format_ms(start) if start is not None else None,
            "end": format_ms(end) if end is not None else None}
    try:
        checked = DecisionCreate(**body)
    except ValidationError as exc:
        _pydantic(exc, errors)
        return None, errors
    if errors:
        return None, errors
    return Narrowing(outcome=checked.outcome, reason=checked.reason, start_ms=start, end_ms=end), errors
