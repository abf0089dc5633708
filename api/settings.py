"""Service settings: where things live and the policy choices governance.md
asks to be configuration (with documented defaults).

Settings are built explicitly (`Settings.from_home`) and passed down, never
read from a module-level global, so tests can run several services side by
side.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from trails.errors import InputError

__all__ = ["Settings", "GROUNDS", "DEFAULT_MAX_PERIOD_DAYS", "DEFAULT_MIN_NARROWING_FRACTION"]

#: The five lawful grounds of the EM DPIA (governance.md, "Who may see a trail").
GROUNDS: tuple[str, ...] = ("bail_breach", "absconded", "article8", "breach_allegation", "sar_or_legal")

#: Longest period a request on each ground may cover before it is flagged too
#: broad (a policy choice; override in HOME/settings.json "max_period_days").
#: A breach is investigated around its own time; absconding needs the run-up;
#: Article 8 representations and SARs may look back further.
DEFAULT_MAX_PERIOD_DAYS: dict[str, int] = {
    "bail_breach": 7,
    "absconded": 14,
    "article8": 90,
    "breach_allegation": 14,
    "sar_or_legal": 365,
}

#: Smallest share of the requested period a ``partial_data_provided`` decision
#: must remove (a policy choice; override in HOME/settings.json
#: "min_narrowing_fraction", 0 <= value < 1). Below it the data is, in
#: substance, what was asked for, and the report should say data_provided:
#: cutting a millisecond off a day is not partial data.
DEFAULT_MIN_NARROWING_FRACTION = 0.10

#: The audit log (api.audit.log): sign a checkpoint every `audit_checkpoint_every` entries or
#: `audit_checkpoint_s` seconds; `tagtrail audit verify` fails when the newest entry no
#: checkpoint covers is older than `audit_unsigned_max_s`. HOME/settings.json may override each.
AUDIT_DEFAULTS: dict[str, int | float] = {"audit_checkpoint_every": 1000, "audit_checkpoint_s": 10.0,
                                          "audit_unsigned_max_s": 3600.0}

_KEYS = frozenset({"approval_ttl_s", "max_period_days", "guidance_version", "min_narrowing_fraction",
                   *AUDIT_DEFAULTS})


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know about its installation.

    home: the tagtrail home (store, database, audit checkpoints, keys).
    database_url: SQLAlchemy URL; default SQLite at HOME/tagtrail.db.
    approval_ttl_s: how long an approved extract may be downloaded (default 7 days).
    max_period_days: per-ground maximum request period (see DEFAULT_MAX_PERIOD_DAYS).
    guidance_version: recorded with every decision (governance: ICO notice).
    min_narrowing_fraction: share of the requested period a partial_data_provided
        decision must remove (see DEFAULT_MIN_NARROWING_FRACTION).
    audit_checkpoint_every, audit_checkpoint_s, audit_unsigned_max_s: the audit
        log's checkpoint cadence and staleness bound (see AUDIT_DEFAULTS).
    """

    home: Path
    database_url: str
    approval_ttl_s: int = 7 * 86400
    max_period_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_PERIOD_DAYS))
    guidance_version: str = "EM-access-guidance-2024.1"
    min_narrowing_fraction: float = DEFAULT_MIN_NARROWING_FRACTION
    audit_checkpoint_every: int = 1000
    audit_checkpoint_s: float = 10.0
    audit_unsigned_max_s: float = 3600.0

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @staticmethod
    def from_home(home: str | os.PathLike, *, database_url: str | None = None) -> "Settings":
        """Settings for `home`: `TAGTRAIL_DATABASE_URL` overrides the SQLite default;
        HOME/settings.json (optional) may set approval_ttl_s, max_period_days,
        guidance_version and min_narrowing_fraction. Unknown keys are refused,
        so a typo is never ignored."""
        home = Path(home)
        url = database_url or os.environ.get("TAGTRAIL_DATABASE_URL") or f"sqlite:///{(home / 'tagtrail.db').resolve()}"
        extra: dict = {}
        cfg = home / "settings.json"
        if cfg.exists():
            try:
                extra = json.loads(cfg.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"{cfg}: not readable JSON: {exc}") from None
            if not isinstance(extra, dict):
                raise InputError(f"{cfg}: must be a JSON object")
            unknown = set(extra) - _KEYS
            if unknown:
                raise InputError(f"{cfg}: unknown keys {sorted(unknown)}")
        periods = dict(DEFAULT_MAX_PERIOD_DAYS)
        for ground, days in (extra.get("max_period_days") or {}).items():
            if ground not in GROUNDS or not isinstance(days, int) or isinstance(days, bool) or days <= 0:
                raise InputError(f"{cfg}: max_period_days[{ground!r}] must be a known ground with a positive whole number of days")
            periods[ground] = days
        ttl = extra.get("approval_ttl_s", 7 * 86400)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            raise InputError(f"{cfg}: approval_ttl_s must be a positive whole number of seconds")
        share = extra.get("min_narrowing_fraction", DEFAULT_MIN_NARROWING_FRACTION)
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share < 1:
            raise InputError(f"{cfg}: min_narrowing_fraction must be a number from 0 up to (not including) 1, "
                             f"got {share!r}")
        audit: dict = {}
        for key, default in AUDIT_DEFAULTS.items():
            value, whole = extra.get(key, default), isinstance(default, int)
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) \
                    or value < (1 if whole else 0):
                raise InputError(f"{cfg}: {key} must be {'a whole number >= 1' if whole else 'seconds >= 0'}, "
                                 f"got {value!r}")
            audit[key] = value if whole else float(value)
        return Settings(home=home, database_url=url, approval_ttl_s=ttl, max_period_days=periods,
                        guidance_version=str(extra.get("guidance_version", "EM-access-guidance-2024.1")),
                        min_narrowing_fraction=float(share), **audit)
