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

__all__ = ["Settings", "GROUNDS", "DEFAULT_MAX_PERIOD_DAYS"]

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


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know about its installation.

    home: the tagtrail home (store, database, audit checkpoints, keys).
    database_url: SQLAlchemy URL; default SQLite at HOME/tagtrail.db.
    approval_ttl_s: how long an approved extract may be downloaded (default 7 days).
    max_period_days: per-ground maximum request period (see DEFAULT_MAX_PERIOD_DAYS).
    guidance_version: recorded with every decision (governance: ICO notice).
    """

    home: Path
    database_url: str
    approval_ttl_s: int = 7 * 86400
    max_period_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_PERIOD_DAYS))
    guidance_version: str = "EM-access-guidance-2024.1"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @staticmethod
    def from_home(home: str | os.PathLike, *, database_url: str | None = None) -> "Settings":
        """Settings for `home`: `TAGTRAIL_DATABASE_URL` overrides the SQLite default;
        HOME/settings.json (optional) may set approval_ttl_s, max_period_days and
        guidance_version. Unknown keys are refused, so a typo is never ignored."""
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
            unknown = set(extra) - {"approval_ttl_s", "max_period_days", "guidance_version"}
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
        return Settings(home=home, database_url=url, approval_ttl_s=ttl, max_period_days=periods,
                        guidance_version=str(extra.get("guidance_version", "EM-access-guidance-2024.1")))
