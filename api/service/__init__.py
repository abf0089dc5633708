"""Continuous operation: intake, the fix log, folder watching, streaming detection, conditions."""
