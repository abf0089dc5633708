"""Per-assignment state of incremental detection (`geofence.incremental`): safe cuts and records.

Why apart from the detector: the detector decides *what* to rerun and from
where; these two keep *what is known* between passes, each with the few rules
that govern it. `CutState` holds the retained safe cuts (and what follows
from them: where a rerun may start, which rows are still needed);
`RecordBook` holds the records, split into those a rerun may still change
and those settled before the oldest retained cut, and turns a rerun's
records into the changes it reports.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import numpy as np

from trails.timestamps import NEG_INF_MS

from .detect import RerunContext
from .model import Policy

__all__ = ["Change", "CutState", "RecordBook", "public"]


@dataclass(frozen=True)
class Change:
    """One record that a batch created, changed or withdrew (`record` None)."""

    breach_id: str
    record: dict | None
    previous: dict | None


def public(r: dict) -> dict:
    """A record as reported: without the ``_start_ms``/``_end_ms`` kept beside it."""
    return {k: v for k, v in r.items() if not k.startswith("_")}


def settled(records: dict[str, dict], t_c: int) -> dict[str, dict]:
    """The records that a rerun from cut t_c leaves alone (`geofence.incremental`'s docstring)."""
    out = {}
    for bid, r in records.items():
        s, e, t = r["_start_ms"], r["_end_ms"], r["type"]
        if (e <= t_c) if t == "accumulated_battery" else ((s <= t_c) if t == "low_battery" else (s < t_c)):
            out[bid] = r
    return out


class CutState:
    """Per assignment: its retained safe cuts (ascending, one small list each), the latest of
    them as a column (`last`, NEG_INF_MS without a cut), whether its rows are held from A.start
    (`complete`: no cut dropped yet) and its latest kept row (`latest`; as_of is the latest
    over all)."""

    def __init__(self, n: int) -> None:
        self.cuts: list[list[int]] = [[] for _ in range(n)]
        self.last = np.full(n, NEG_INF_MS, np.int64)
        self.complete = np.ones(n, np.bool_)
        self.latest = np.full(n, NEG_INF_MS, np.int64)

    @staticmethod
    def restored(cuts: list[list[int]], complete: list[bool], latest: np.ndarray) -> "CutState":
        state = CutState(0)
        state.cuts = cuts
        state.complete = np.array(complete, np.bool_)
        state.last = np.array([c[-1] if c else NEG_INF_MS for c in cuts], np.int64)
        state.latest = latest
        return state

    def saved(self) -> list[tuple[list[int], bool]]:
        """Per assignment (in order): its retained safe cuts and whether its rows start at A.start."""
        return [(list(c), bool(k)) for c, k in zip(self.cuts, self.complete.tolist())]

    def needed_from(self, a_start: np.ndarray | None = None) -> np.ndarray:
        """Per assignment, the instant from which its rows are still needed: its oldest retained
        cut, or (complete, or without a cut) `a_start` (None: NEG_INF_MS)."""
        first = np.array([c[0] if c else NEG_INF_MS for c in self.cuts], np.int64)
        return np.where(self.complete | (first == NEG_INF_MS), NEG_INF_MS if a_start is None else a_start, first)

    def starts(self, a_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each assignment's rerun starts by default: (its latest cut, else A.start; from a cut)."""
        from_cut = self.last > NEG_INF_MS
        return np.where(from_cut, self.last, a_start), from_cut

    def rerun_starts(self, touched: np.ndarray, new_min: np.ndarray,
                     a_start: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Where each touched assignment reruns from, given its oldest new row `new_min`: its latest
        cut before the new rows (the usual case, vectorised), an earlier retained cut, or A.start;
        returns (start, from a cut, the assignments to rebuild from their whole history: new rows
        older than anything retained). Their records stay: the rerun from A.start is diffed
        against them."""
        start, from_cut = self.starts(a_start)
        late = np.flatnonzero(touched & ((self.last >= new_min) | ((self.last == NEG_INF_MS) & ~self.complete)))
        rebuild = []
        for i in late.tolist():
            cuts = self.cuts[i]
            k = bisect_left(cuts, int(new_min[i]))
            if k:
                start[i], from_cut[i] = cuts[k - 1], True
            else:
                start[i], from_cut[i] = a_start[i], False
                if not self.complete[i]:
                    rebuild.append(i)
        return start, from_cut, rebuild

    def reset(self, i: int, latest: int) -> None:
        """Assignment `i` holds its whole history again (latest row `latest`), without a cut."""
        self.cuts[i] = []
        self.last[i] = NEG_INF_MS
        self.complete[i] = True
        self.latest[i] = latest

    def advance(self, R: np.ndarray, cut: np.ndarray, retention_ms: int | None) -> None:
        """After a rerun of `R`: take each new latest cut `cut` (-1: none found), dropping the cuts
        older than `retention_ms` before it (then the assignment is no longer complete)."""
        adv = (cut >= 0) & (cut > self.last[R])
        idx, new = R[adv], cut[adv]
        self.last[idx] = new
        for i, c in zip(idx.tolist(), new.tolist()):
            cuts = self.cuts[i]
            cuts.append(c)
            if retention_ms is not None and cuts[0] < c - retention_ms:
                k = bisect_left(cuts, c - retention_ms, 0, len(cuts) - 1)
                if k:
                    del cuts[:k]
                    self.complete[i] = False

    def remapped(self, kept: np.ndarray, old_to_new: np.ndarray, n: int) -> "CutState":
        """The state of the assignments `kept` at their new index (of `n`); the others start afresh."""
        out = CutState(n)
        new_idx = old_to_new[kept]
        for i, j in zip(kept.tolist(), new_idx.tolist()):
            out.cuts[j] = self.cuts[i]
        out.last[new_idx] = self.last[kept]
        out.complete[new_idx] = self.complete[kept]
        out.latest[new_idx] = self.latest[kept]
        return out


class RecordBook:
    """The current records, by assignment index then breach_id, each with ``_start_ms`` and
    ``_end_ms``: `live`, those a rerun may still change; `frozen`, those settled before the
    oldest retained cut, which only a rebuild reruns. Dicts are kept only for assignments
    that have records."""

    def __init__(self, live: dict[int, dict[str, dict]] | None = None,
                 frozen: dict[int, dict[str, dict]] | None = None) -> None:
        self.live = {} if live is None else live
        self.frozen = {} if frozen is None else frozen

    def records(self) -> list[dict]:
        """Every current record, in the contract's order."""
        from .records import sort_records

        return sort_records([public(r) for d in (self.frozen, self.live) for recs in d.values()
                             for r in recs.values()])

    def breach_ids(self) -> set[str]:
        return {bid for d in (self.frozen, self.live) for recs in d.values() for bid in recs}

    def of(self, i: int) -> dict[str, dict]:
        """Every record of assignment `i`."""
        live, frozen = self.live.get(i, {}), self.frozen.get(i)
        return {**frozen, **live} if frozen else live

    def has(self, i: int) -> bool:
        return i in self.live or i in self.frozen

    def withdraw(self, i: int) -> list["Change"]:
        """Every record of assignment `i` goes."""
        changes = [Change(bid, None, public(r)) for bid, r in self.of(i).items()]
        self.live.pop(i, None)
        self.frozen.pop(i, None)
        return changes

    def remapped(self, src: np.ndarray, old_to_new: np.ndarray) -> "RecordBook":
        """Records under new assignment indexes: new assignment j takes those of old `src[j]` (-1:
        none); kept ones (`old_to_new[src[j]] == j`) as they were, the others (to be rebuilt) all
        live, diffed against the rerun from A.start."""
        live, frozen = {}, {}
        for j, i in enumerate(src.tolist()):
            if i < 0:
                continue
            if old_to_new[i] == j:
                if i in self.live:
                    live[j] = self.live[i]
                if i in self.frozen:
                    frozen[j] = self.frozen[i]
            elif self.of(i):
                live[j] = dict(self.of(i))
        return RecordBook(live, frozen)

    def context(self, R: np.ndarray, start: np.ndarray, from_cut: np.ndarray, a_start: np.ndarray,
                policy: Policy) -> RerunContext:
        """The accumulated-battery window across each rerun's cut (`RerunContext`)."""
        r0 = a_start[R].copy()
        n_prior = np.zeros(R.size, np.int64)
        flat: list[tuple[int, int]] = []
        if policy.battery_policy == "accumulated":
            prior: dict[int, list[tuple[int, int]]] = {}
            for j in np.flatnonzero(from_cut).tolist():
                i = int(R[j])
                if not self.has(i):
                    continue
                done = settled(self.of(i), int(start[j]))
                acc = [r["_end_ms"] for r in done.values() if r["type"] == "accumulated_battery"]
                if acc:
                    r0[j] = max(acc)
                low = max(int(r0[j]), int(start[j]) - policy.accumulated_window_ms)
                gaps = sorted((r["_start_ms"], r["_end_ms"]) for r in done.values()
                              if r["type"] == "battery" and r["_end_ms"] > low)
                if gaps:
                    prior[j] = gaps
            for j in sorted(prior):
                n_prior[j] = len(prior[j])
                flat += prior[j]
        return RerunContext(r0_ms=r0, prior_offsets=np.concatenate([[0], np.cumsum(n_prior)]).astype(np.int64),
                            prior_start_ms=np.asarray([g[0] for g in flat], np.int64),
                            prior_end_ms=np.asarray([g[1] for g in flat], np.int64))

    def replace(self, R: np.ndarray, start: np.ndarray, from_cut: np.ndarray, res: Any, n: int) -> list[Change]:
        """Replace the live records of assignments `R` (of `n`) by the rerun's `res` (a
        `DetectResult` of `R`, in order, from `start`), reporting what changed."""
        pos = np.full(n, -1, np.int64)
        pos[R] = np.arange(R.size, dtype=np.int64)
        per: dict[int, list[int]] = {}
        for k, j in enumerate(res.record_assignment.tolist()):
            per.setdefault(j, []).append(k)
        check = set(per) | {int(pos[i]) for i in self.live if pos[i] >= 0} \
            | {int(pos[i]) for i in self.frozen if pos[i] >= 0 and not from_cut[pos[i]]}
        changes: list[Change] = []
        for j in sorted(check):
            i, s, t_c = int(R[j]), int(start[j]), bool(from_cut[j])
            records = self.live.get(i, {})
            if not t_c and i in self.frozen:  # a rebuild from A.start: everything is recomputed
                records = {**self.frozen.pop(i), **records}
            new = settled(records, s) if t_c else {}
            for k in per.get(j, ()):
                r = res.records[k]
                s_ms, e_ms = int(res.record_start_ms[k]), int(res.record_end_ms[k])
                if t_c and r["type"] == "low_battery" and s_ms == s:
                    continue  # decided with the fix before the cut; kept from before
                new[r["breach_id"]] = {**r, "_start_ms": s_ms, "_end_ms": e_ms}
            changes += _changes(records, new)
            if new:
                self.live[i] = new
            else:
                self.live.pop(i, None)
        return changes

    def freeze(self, rerun: np.ndarray, cuts: list[list[int]]) -> None:
        """Move what is settled before each rerun (`rerun[i]`) assignment's oldest retained cut
        to `frozen`: it can only change by a rebuild."""
        for i in [i for i in self.live if rerun[i] and cuts[i]]:
            done = settled(self.live[i], cuts[i][0])
            if done:
                self.frozen.setdefault(i, {}).update(done)
                rest = {bid: r for bid, r in self.live[i].items() if bid not in done}
                if rest:
                    self.live[i] = rest
                else:
                    del self.live[i]


def _changes(old: dict[str, dict], new: dict[str, dict]) -> list[Change]:
    """What turning records `old` into `new` (by breach_id) creates, changes and withdraws."""
    out = []
    for bid in old.keys() | new.keys():
        old_r, new_r = old.get(bid), new.get(bid)
        if old_r is None or new_r is None or public(old_r) != public(new_r):
            out.append(Change(bid, None if new_r is None else public(new_r), None if old_r is None else public(old_r)))
    return out
