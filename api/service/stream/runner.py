"""The runner: schedules the service's work in one background thread.

It knows nothing of rows or records. Woken by `notify` (intake accepted a
batch) or every second, it runs passes until one finds nothing new (at most
one pass per `min_pass_s`, and after a pass that took d seconds, a pause of
up to ``rest_ratio * d`` within a latency budget: a pass reruns every worn assignment when as_of
moves, so its cost hardly depends on how many new rows it takes, and
back-to-back passes under a steady stream would starve intake of CPU and of
the GIL; what arrives meanwhile goes into the next pass), then the housekeeping
(compaction when due, an audit checkpoint when due). An error is logged and
kept in `last_error`, and the work is retried at the next wake-up: the
service never stops because one pass failed. `idle` is set whenever nothing
notified is left to do, so tests and `flush` can wait for it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Runner", "sign_if_due", "pause_after"]

log = logging.getLogger("tagtrail.stream")

#: Seconds the thread sleeps after a failure before it waits for the next wake-up.
RETRY_PAUSE_S = 0.5
#: Seconds between wake-ups when nobody notifies.
WAKE_EVERY_S = 1.0
#: Pause after a pass, as a multiple of its own duration (`Runner`). Measured with
#: benchmarks/stream.py, 50,000 fixes/s offered, 2 cores shared with the HTTP client and other
#: work (load 5-6): intake took 37,314/s with 1.0, 46,053/s with 2.0; 3.0 took about all that was
#: offered but a pass cycle then approaches the 2 s latency target by itself.
REST_RATIO = 2.0
#: The rest is cut so that a batch arriving just after a pass began waits at most this long for
#: its records (`pause_after`): the stream target is p99 under 2 s, with intake's own time on top.
LATENCY_BUDGET_S = 1.5


class Runner:
    """Runs `run_pass` (returns whether it found work) and then `housekeeping` in a thread.

    Parameters
    ----------
    run_pass : one pass; True when it processed rows (then another pass follows).
    housekeeping : what to do once the passes are done (compaction, checkpoints).
    min_pass_s : at least this long from the start of a pass to the start of the next.
    rest_ratio : after a pass that found rows and took d seconds, up to ``rest_ratio * d``
        before the next starts (so passes take about 1 / (1 + rest_ratio) of the time while
        rows keep coming), cut to keep a batch's wait within `LATENCY_BUDGET_S` (`pause_after`).
    """

    def __init__(self, run_pass: Callable[[], bool], housekeeping: Callable[[], None], *, min_pass_s: float = 0.2,
                 rest_ratio: float = REST_RATIO, name: str = "tagtrail-detect") -> None:
        if not rest_ratio >= 0:
            raise ValueError(f"rest_ratio={rest_ratio!r} must be >= 0")
        self.run_pass = run_pass
        self.housekeeping = housekeeping
        self.min_pass_s = min_pass_s
        self.rest_ratio = rest_ratio
        self.name = name
        self.last_error: str | None = None
        self.idle = threading.Event()
        self.idle.set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (once; a second call does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the thread after its current step; returns whether it was running."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return False
        self._thread.join(timeout=timeout)
        self._thread = None
        return True

    def notify(self) -> None:
        """There is new work: wake the thread (and clear `idle` until it is done)."""
        self.idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until everything notified so far has been processed."""
        return self.idle.wait(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=WAKE_EVERY_S)
            self._wake.clear()
            try:
                while not self._stop.is_set():
                    began = time.monotonic()
                    if not self.run_pass():
                        break
                    self._stop.wait(pause_after(time.monotonic() - began, min_pass_s=self.min_pass_s,
                                                rest_ratio=self.rest_ratio))
                self.housekeeping()
                self.last_error = None
            except Exception as exc:  # logged; retried on the next wake-up
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("detection pass failed; will retry")
                time.sleep(RETRY_PAUSE_S)
            finally:
                if not self._wake.is_set():
                    self.idle.set()


def pause_after(took_s: float, *, min_pass_s: float, rest_ratio: float,
                latency_budget_s: float = LATENCY_BUDGET_S) -> float:
    """Seconds to wait after a pass that found rows and took `took_s`.

    Passes start at least `min_pass_s` apart. Beyond that, the CPU and the GIL go to intake for
    ``rest_ratio * took_s``, but never so long that a batch arriving just after a pass began
    would wait more than `latency_budget_s` (the rest of this pass, the pause, the next pass:
    ``pause + 2 * took_s``): at moderate rates passes are short and rest freely; when they grow
    long, latency wins over the rest.
    """
    rest = min(rest_ratio * took_s, latency_budget_s - 2.0 * took_s)
    return max(0.0, min_pass_s - took_s, rest)


def sign_if_due(audit, read_only: sessionmaker[Session]) -> None:
    """Sign an audit checkpoint when the cadence says so, also while no request commits
    (an idle service must not leave its last entries unsigned for long). A refusal
    (the log failed an integrity check) is logged: the API refuses what it must."""
    from api.audit.log import AuditIntegrityError

    with read_only() as session:
        try:
            audit.write_checkpoint(session)
        except AuditIntegrityError as exc:
            log.warning("audit checkpoint refused: %s", exc)
        finally:
            session.rollback()
