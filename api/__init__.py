"""The ways in: command line, (later) HTTP API, database, audit log and reports."""
