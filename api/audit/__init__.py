"""The tamper-evident audit log: entries, Merkle tree, checkpoints on disk, verification."""
