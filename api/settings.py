"""Service settings: where things live and the policy choices governance.md
asks to be configuration (with documented defaults).

Settings are built explicitly (`Settings.from_home`) and passed down, never
read from a module-level global, so tests can run several services side by
side. `Settings` is a `pydantic_settings.BaseSettings` model with three
sources, highest first: the arguments of `from_home`; the environment, for
``TAGTRAIL_HOME`` and ``TAGTRAIL_DATABASE_URL`` only (a policy choice is never
taken from the environment, where nobody reviews it); and HOME/settings.json
(`_SettingsJson`), which may hold only the policy choices (`POLICY_KEYS`).
Every value is validated once, here: a bad one, or an unknown key (a typo), is
refused with a message naming the file and the key, never ignored or coerced.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from trails.errors import InputError

__all__ = ["Settings", "GROUNDS", "DEFAULT_CONSOLE_IDLE_S", "DEFAULT_MAX_PERIOD_DAYS", "DEFAULT_MIN_NARROWING_FRACTION", "AUDIT_DEFAULTS",
           "POLICY_KEYS"]

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

#: A console session ends after this many seconds without a request (a policy choice; override in
#: HOME/settings.json "console_idle_s"): an unattended screen in a shared office stops showing
#: wearers' data after half an hour.
DEFAULT_CONSOLE_IDLE_S = 30 * 60
#: A console session ends this many seconds after sign-in however busy it is ("console_max_s"): a
#: stolen cookie is worth at most a working day, and each day starts with a fresh sign-in.
DEFAULT_CONSOLE_MAX_S = 12 * 3600

#: The keys HOME/settings.json may hold: the policy choices, nothing about where things live.
POLICY_KEYS = frozenset({"approval_ttl_s", "max_period_days", "guidance_version", "min_narrowing_fraction",
                         "console_idle_s", "console_max_s", "breach_evidence", "mitigation_days", "review_every_days",
                         "notify_webhook_url", "notify_email_to", "smtp_host", "smtp_port", "smtp_starttls",
                         "smtp_from", "notify_max_attempts", "notify_backoff_s", "retention_every_s",
                         *AUDIT_DEFAULTS})
#: The settings the environment may give (as TAGTRAIL_HOME, TAGTRAIL_DATABASE_URL, TAGTRAIL_TILE_URL,
#: TAGTRAIL_TILE_FILE).
_ENV_FIELDS = frozenset({"home", "database_url", "tile_url", "tile_file"})


def _sqlite_in_home(data: dict[str, Any]) -> str:
    """The default database: SQLite at HOME/tagtrail.db (absolute)."""
    home = data.get("home")
    return f"sqlite:///{(Path(home) / 'tagtrail.db').resolve()}" if home is not None else ""


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _SettingsJson(PydanticBaseSettingsSource):
    """HOME/settings.json (optional), HOME being the one the sources before it gave.

    Refuses a file that is not a JSON object, and keys outside `POLICY_KEYS`,
    naming the file; the values are checked by the model's validators."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole file is read at once, in __call__

    def __call__(self) -> dict[str, Any]:
        home = self.current_state.get("home")
        if home is None:
            return {}
        cfg = Path(home) / "settings.json"
        if not cfg.exists():
            return {}
        try:
            doc = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{cfg}: not readable JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InputError(f"{cfg}: must be a JSON object")
        unknown = set(doc) - POLICY_KEYS
        if unknown:
            raise InputError(f"{cfg}: unknown keys {sorted(unknown)}")
        return doc


class _Environment(EnvSettingsSource):
    """The environment, for `_ENV_FIELDS` only (TAGTRAIL_HOME, TAGTRAIL_DATABASE_URL)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name not in _ENV_FIELDS:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(BaseSettings):
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
    console_idle_s: a console session ends after this long unused (DEFAULT_CONSOLE_IDLE_S).
    console_max_s: and this long after sign-in in any case (DEFAULT_CONSOLE_MAX_S).
    mitigation_days: working days (Monday to Friday) within which a wearer's mitigation must be
        decided (default 20).
    review_every_days: days between a wearer's reviews, from the start of monitoring or the last
        review (default 91: three-monthly).
    retention_every_s: how often the running service makes a retention pass (default a day; 0: never,
        for a deployment that runs `tagtrail retention run` from cron instead).
    notify_webhook_url, notify_email_to, smtp_host, smtp_port, smtp_starttls, smtp_from,
    notify_max_attempts, notify_backoff_s: where priority 1 records are announced
        (`api.service.notifications`); nothing is sent without a webhook URL or an SMTP host
        with recipients.
    tile_url: an XYZ tile server the deployment runs (TAGTRAIL_TILE_URL,
        ``https://tiles.example/{z}/{x}/{y}.png``); its origin is the only one the
        console's Content-Security-Policy lets images come from. None: no tiles.
    tile_file: a local MBTiles file of raster tiles (TAGTRAIL_TILE_FILE) the app
        serves itself at /tiles/{z}/{x}/{y} (api.web.tiles): a background with no
        tile server and nothing but 'self' in the CSP. Checked here (an SQLite
        file with the tiles and metadata tables, a raster format). At most one
        of tile_url and tile_file; with neither, maps draw the boundaries the
        admin loaded (`tagtrail boundaries load`) as context.
    breach_evidence: what a record's console page shows of its fixes: ``window``
        (default: only the fixes inside the record's own window plus the policy's
        coverage either side, audited as a consultation on ground bail_breach) or
        ``request`` (no fixes: a link to request access instead).

    Nothing secret is a setting (the audit keys are made per home, in
    HOME/keys), so there is no insecure default to refuse; what would weaken a
    guarantee (a checkpoint never, an approval that never expires, a partial
    decision that removes nothing, a ground nobody knows) is refused.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="TAGTRAIL_", env_ignore_empty=True,
                                      validate_default=False)

    home: Path
    database_url: str = Field(default_factory=_sqlite_in_home)
    approval_ttl_s: int = 7 * 86400
    max_period_days: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_MAX_PERIOD_DAYS))
    guidance_version: str = "EM-access-guidance-2024.1"
    min_narrowing_fraction: float = DEFAULT_MIN_NARROWING_FRACTION
    audit_checkpoint_every: int = 1000
    audit_checkpoint_s: float = 10.0
    audit_unsigned_max_s: float = 3600.0
    console_idle_s: int = DEFAULT_CONSOLE_IDLE_S
    console_max_s: int = DEFAULT_CONSOLE_MAX_S
    mitigation_days: int = 20
    review_every_days: int = 91
    retention_every_s: int = 86_400
    notify_webhook_url: str | None = None
    notify_email_to: tuple[str, ...] = ()
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_from: str = "tagtrail@localhost"
    notify_max_attempts: int = 6
    notify_backoff_s: float = 2.0
    tile_url: str | None = None
    tile_file: Path | None = None
    breach_evidence: Literal["window", "request"] = "window"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then TAGTRAIL_HOME / TAGTRAIL_DATABASE_URL, then HOME/settings.json (no .env, no secrets dir)."""
        return init_settings, _Environment(settings_cls), _SettingsJson(settings_cls)

    @field_validator("max_period_days", mode="before")
    @classmethod
    def _periods(cls, value: Any) -> dict[str, int]:
        """The defaults, with the grounds the file names replaced (null: the defaults)."""
        periods = dict(DEFAULT_MAX_PERIOD_DAYS)
        if value is None:
            return periods
        if not isinstance(value, dict):
            raise ValueError(f"max_period_days must be an object of grounds and days, got {value!r}")
        for ground, days in value.items():
            if ground not in GROUNDS or not _is_whole(days) or days <= 0:
                raise ValueError(f"max_period_days[{ground!r}] must be a known ground with a positive whole "
                                 f"number of days")
            periods[ground] = days
        return periods

    @field_validator("approval_ttl_s", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> int:
        if not _is_whole(value) or value <= 0:
            raise ValueError("approval_ttl_s must be a positive whole number of seconds")
        return value

    @field_validator("guidance_version", mode="before")
    @classmethod
    def _guidance(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"guidance_version must be non-empty text, got {value!r}")
        return value

    @field_validator("min_narrowing_fraction", mode="before")
    @classmethod
    def _share(cls, value: Any) -> float:
        if not _is_number(value) or not 0 <= value < 1:
            raise ValueError(f"min_narrowing_fraction must be a number from 0 up to (not including) 1, got {value!r}")
        return float(value)

    @field_validator("audit_checkpoint_every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> int:
        if not _is_whole(value) or value < 1:
            raise ValueError(f"audit_checkpoint_every must be a whole number >= 1, got {value!r}")
        return value

    @field_validator("audit_checkpoint_s", "audit_unsigned_max_s", mode="before")
    @classmethod
    def _seconds(cls, value: Any, info: ValidationInfo) -> float:
        if not _is_number(value) or value < 0:
            raise ValueError(f"{info.field_name} must be seconds >= 0, got {value!r}")
        return float(value)

    @field_validator("console_idle_s", mode="before")
    @classmethod
    def _idle(cls, value: Any) -> int:
        if not _is_whole(value) or not 60 <= value <= 86400:
            raise ValueError(f"console_idle_s must be whole seconds from 60 to 86400, got {value!r}")
        return value

    @field_validator("notify_webhook_url", mode="before")
    @classmethod
    def _webhook(cls, value: Any) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"notify_webhook_url must be an http(s) URL, got {value!r}")
        return value

    @field_validator("notify_max_attempts", mode="before")
    @classmethod
    def _attempts(cls, value: Any) -> int:
        if not _is_whole(value) or not 1 <= value <= 50:
            raise ValueError(f"notify_max_attempts must be a whole number from 1 to 50, got {value!r}")
        return value

    @field_validator("review_every_days", mode="before")
    @classmethod
    def _review_days(cls, value: Any) -> int:
        if not _is_whole(value) or not 7 <= value <= 366:
            raise ValueError(f"review_every_days must be a whole number of days from 7 to 366, got {value!r}")
        return value

    @field_validator("retention_every_s", mode="before")
    @classmethod
    def _retention_every(cls, value: Any) -> int:
        if not _is_whole(value) or not (value == 0 or 600 <= value <= 7 * 86_400):
            raise ValueError(f"retention_every_s must be 0 (never) or a whole number of seconds from 600 to 604800, "
                             f"got {value!r}")
        return value

    @field_validator("mitigation_days", mode="before")
    @classmethod
    def _mitigation_days(cls, value: Any) -> int:
        if not _is_whole(value) or not 1 <= value <= 100:
            raise ValueError(f"mitigation_days must be a whole number of working days from 1 to 100, got {value!r}")
        return value

    @field_validator("console_max_s", mode="before")
    @classmethod
    def _max_session(cls, value: Any) -> int:
        if not _is_whole(value) or not 300 <= value <= 7 * 86400:
            raise ValueError(f"console_max_s must be whole seconds from 300 to 604800, got {value!r}")
        return value

    @field_validator("tile_url", mode="before")
    @classmethod
    def _tiles(cls, value: Any) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                or not all(k in value for k in ("{z}", "{x}", "{y}")) or any(c in value for c in " ;'\"\n")):
            raise ValueError(f"tile_url (TAGTRAIL_TILE_URL) must be an http(s) URL with {{z}}, {{x}} and {{y}}, "
                             f"got {value!r}")
        return value

    @field_validator("tile_file", mode="after")
    @classmethod
    def _tile_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        from api.service.mbtiles import check_mbtiles

        if value is None:
            return None
        if info.data.get("tile_url"):
            raise ValueError("give tile_url (TAGTRAIL_TILE_URL) or tile_file (TAGTRAIL_TILE_FILE), not both")
        check_mbtiles(value)
        return value.resolve()

    @property
    def tile_media_type(self) -> str | None:
        """The Content-Type of `tile_file`'s tiles (its metadata's format)."""
        from api.service.mbtiles import check_mbtiles

        return None if self.tile_file is None else check_mbtiles(self.tile_file)

    @property
    def tile_origin(self) -> str | None:
        """scheme://host[:port] of `tile_url` (what the console's CSP allows images from)."""
        if self.tile_url is None:
            return None
        parts = urlsplit(self.tile_url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @staticmethod
    def from_home(home: str | os.PathLike | None = None, *, database_url: str | None = None) -> "Settings":
        """Settings for `home` (None: $TAGTRAIL_HOME). `database_url`, else
        $TAGTRAIL_DATABASE_URL, overrides the SQLite default; HOME/settings.json
        (optional) may set the policy choices (`POLICY_KEYS`).

        Raises
        ------
        InputError
            HOME/settings.json is not a JSON object of known keys, or a value is
            out of range: one message naming the file and each bad key.
        """
        given: dict[str, Any] = {}
        if home is not None:
            given["home"] = Path(home)
        if database_url:
            given["database_url"] = database_url
        try:
            return Settings(**given)
        except ValidationError as exc:
            where = given.get("home") or os.environ.get("TAGTRAIL_HOME")  # the settings.json the values came from
            raise InputError(_refusal(exc, where)) from None


def _refusal(exc: ValidationError, home: str | os.PathLike | None) -> str:
    """One line for a `ValidationError`: the file, then each bad key and why (our own words)."""
    problems = []
    for err in exc.errors(include_url=False):
        cause = (err.get("ctx") or {}).get("error")
        key = ".".join(str(p) for p in err["loc"])
        if isinstance(cause, ValueError):
            problems.append(str(cause))
        elif err["type"] == "missing" and key == "home":
            problems.append("no home: give one, or set TAGTRAIL_HOME")
        else:
            problems.append(f"{key}: {err['msg']}")
    where = f"{Path(home) / 'settings.json'}: " if home is not None else ""
    return where + "; ".join(problems)
