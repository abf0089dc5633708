"""What a client sends to ask for, check and decide access to a trail: the
input models the API and the console validate with, so both ways in accept
exactly the same requests.

Timestamps travel as RFC 3339 strings with an offset and are parsed with
`trails.timestamps.parse_timestamp` (a naive timestamp is refused, never
guessed at). Free text must be "non-trivial" (`MIN_TEXT_CHARS` letters or
digits: Unicode categories L* and N*, so invisible or punctuation-only padding
does not count) where governance.md asks for a reason, and every string must be
encodable UTF-8 (JSON allows lone surrogates; databases and canonical JSON do
not).
"""
from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trails.timestamps import NaiveTimestampError, format_ms, parse_timestamp

from api.db.models import KINDS, OUTCOMES
from api.settings import GROUNDS

__all__ = ["MIN_TEXT_CHARS", "count_letters", "parse_ts", "fmt_ts", "Text", "Note", "ShortText", "Reason", "Timestamp",
           "Kind", "Ground", "Outcome", "Urgency", "In", "AccessRequestCreate", "IdentityCheckCreate",
           "DecisionCreate", "Exemption", "ExtensionCreate"]

#: Letters or digits (Unicode L*, N*) a justification, necessity statement or decision reason needs.
MIN_TEXT_CHARS = 20
#: Earliest and latest instants accepted (years 1970..9999): keeps every
#: millisecond value well inside a 64-bit integer.
_MIN_MS, _MAX_MS = 0, 253402300799999

Kind = Literal[tuple(KINDS)]  # type: ignore[valid-type]
Ground = Literal[tuple(GROUNDS)]  # type: ignore[valid-type]
Outcome = Literal[tuple(OUTCOMES)]  # type: ignore[valid-type]
Urgency = Literal["routine", "urgent"]


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


def count_letters(value: str) -> int:
    """Letters and digits in `value` (Unicode categories L* and N*).

    What a reader can read: spaces, punctuation, symbols and invisible
    format characters (zero-width spaces, joiners, direction marks) are not
    explanation, so 30 zero-width spaces count 0, not 30.
    """
    return sum(1 for c in value if unicodedata.category(c)[0] in "LN")


def _non_trivial(value: str) -> str:
    n = count_letters(value)
    if n < MIN_TEXT_CHARS:
        raise ValueError(f"needs at least {MIN_TEXT_CHARS} letters or digits of explanation (got {n})")
    return value


def parse_ts(value: str) -> int:
    """RFC 3339 with offset -> epoch ms, or ValueError with a message naming the value."""
    try:
        ms = parse_timestamp(value)
    except NaiveTimestampError:
        raise ValueError(f"timestamp {value!r} has no UTC offset: add Z or +HH:MM") from None
    except ValueError as exc:
        raise ValueError(f"{exc} (expected RFC 3339 with an offset, e.g. 2024-03-25T18:00:00Z)") from None
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError(f"timestamp {value!r} is outside 1970..9999")
    return ms


def fmt_ts(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _timestamp(value: str) -> str:
    parse_ts(value)
    return value


Text = Annotated[str, Field(max_length=10_000), AfterValidator(_utf8)]
#: A caseworker's note on a record (status changes): free text, bounded.
Note = Annotated[str, Field(max_length=2000), AfterValidator(_utf8)]
ShortText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_utf8)]
Reason = Annotated[str, Field(max_length=10_000, description=f"at least {MIN_TEXT_CHARS} letters or digits"),
                   AfterValidator(_utf8), AfterValidator(_non_trivial)]
Timestamp = Annotated[str, Field(max_length=40, description="RFC 3339 with a UTC offset, e.g. 2024-03-25T18:00:00Z",
                                 examples=["2024-03-25T18:00:00Z"]),
                      AfterValidator(_utf8), AfterValidator(_timestamp)]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class AccessRequestCreate(In):
    """A request to see one wearer's trail or attendance for one period."""

    subject_id: ShortText
    kind: Kind
    ground: Ground = Field(description="one of the five lawful grounds of the EM DPIA")
    start: Timestamp
    end: Timestamp
    justification: Reason = Field(description="why this data and why this period")
    necessity: Reason = Field(description="why nothing less intrusive will do (the alternative considered)")
    reference: ShortText | None = Field(None, description="case reference; for bail_breach, the breach_id")
    urgency: Urgency = "routine"
    respond_by: Timestamp | None = None


class IdentityCheckCreate(In):
    """How an external requester's identity was confirmed."""

    note: Reason = Field(description="how the identity was confirmed (call-back number, warrant card, ...)")


class Exemption(In):
    """A part of a subject access package withheld, and why (the package lists it)."""

    part: Literal["fixes", "records", "consultations"]
    reason: Reason


class DecisionCreate(In):
    """An approver's decision. `start`/`end` narrow the period and are
    required for (and only allowed with) partial_data_provided."""

    outcome: Outcome
    reason: Reason
    start: Timestamp | None = None
    end: Timestamp | None = None
    exemptions: list[Exemption] = Field(default_factory=list, max_length=3,
                                        description="subject access (kind sar) only: parts withheld, each with why")


class ExtensionCreate(In):
    """Why a subject access request needs two more months (complexity or number of requests)."""

    reason: Reason
