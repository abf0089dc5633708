"""One module per `tagtrail` subcommand; see `api.cli`."""
