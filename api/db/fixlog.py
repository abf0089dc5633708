"""The intake log's fix chunks: one Arrow IPC stream per accepted batch.

A chunk holds the batch's accepted fixes in arrival order, numbered by seq
``first..last``; the columns are those the store keeps (`row`, `device_id`,
`ts_ms`, `lat`, `lon`, `x`, `y`, `accuracy_m`, `battery_pct`, NaN = not
given). The next seq is kept in `detector_state` ("intake_fix_seq") so that
seqs are never reused after compaction empties the log.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.ipc as ipc

__all__ = ["SCHEMA", "SEQ_KEY", "encode", "decode"]

SCHEMA = pa.schema([("row", pa.int64()), ("device_id", pa.string()), ("ts_ms", pa.int64()),
                    ("lat", pa.float64()), ("lon", pa.float64()), ("x", pa.float64()), ("y", pa.float64()),
                    ("accuracy_m", pa.float64()), ("battery_pct", pa.float64())])
#: detector_state key of the last seq given to a fix.
SEQ_KEY = "intake_fix_seq"


def encode(table: pa.Table) -> bytes:
    """A chunk's bytes (the table cast to `SCHEMA`)."""
    table = table.select(SCHEMA.names).cast(SCHEMA)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Table:
    """The table of a chunk's bytes."""
    return ipc.open_stream(pa.py_buffer(data)).read_all()
