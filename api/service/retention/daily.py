"""The running service's retention pass: at most once every
`Settings.retention_every_s` (default a day), from the stream service's
housekeeping, the same pass as `tagtrail retention run`. A failure is logged
and tried again at the next interval; it never stops detection.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from api.service.retention.run import RetentionResult, run_retention

__all__ = ["DailyRetention"]

_log = logging.getLogger("tagtrail.retention")


class DailyRetention:
    """When the last pass ran, and whether the next is due; `tick` runs it when it is."""

    def __init__(self, factory, audit, settings: Callable[[], object], clock: Callable[[], int]) -> None:
        self.factory, self.audit, self.settings, self.clock = factory, audit, settings, clock
        self.next_ms: int | None = None  # the first tick runs a pass: a restarted service catches up at once

    def tick(self) -> RetentionResult | None:
        settings = self.settings()  # read each time: the service's settings may be replaced
        every = settings.retention_every_s
        now = self.clock()
        if every == 0 or (self.next_ms is not None and now < self.next_ms):
            return None
        self.next_ms = now + every * 1000
        try:
            result = run_retention(self.factory, self.audit, settings.home, now_ms=now)
        except Exception:  # noqa: BLE001 - a bad retention.json or a database hiccup must not stop detection
            _log.exception("retention pass failed; next try in %s s", every)
            return None
        if result.erased:
            _log.info("retention: %d erasure(s), %d due not erased", len(result.erased), len(result.skipped))
        return result
