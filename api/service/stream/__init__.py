"""Continuous detection for a running service: the intake log is read in
arrival order, fed to `geofence.incremental.IncrementalDetector`, and the
changed records are written to the breach queue.

Consistency: one pass reads the rows after the watermark, applies every
record change (new, updated, withdrawn with a reason), moves the watermark
and appends one audit entry, all in one transaction. A crash anywhere loses
nothing: on restart the detector is rebuilt from the database (records,
watermark, safe cuts) and the rows already processed, and the rows after the
watermark are processed again; record changes are upserts by breach_id, so
nothing is counted twice.

The service is split by job, each unit small and tested alone
(tests/test_stream_units.py):

- `service`: `StreamService`, the facade callers use, and the pass that
  composes the others;
- `runner`: the background thread that schedules passes, compaction and
  audit checkpoints;
- `log_reader`: reads the intake log (rows after a watermark, a device's
  history, the chunks intake handed over);
- `detector_state`: the in-memory detector and what is saved beside it
  (watermark, as_of, configuration digest, safe cuts);
- `queue_writer`: record changes into the breach queue, withdrawals with
  their reason and batch;
- `compaction`: processed rows from the log into the Parquet store;
- `intake_link`: the first-arrival deduplication index and intake's context.
"""
from api.service.stream.queue_writer import row_to_record
from api.service.stream.service import DEFAULT_RETENTION_MS, PassStats, StreamService

#: The former name of `row_to_record`, which tests comparing the queue with batch detection import.
_record = row_to_record

__all__ = ["StreamService", "PassStats", "DEFAULT_RETENTION_MS", "row_to_record"]
