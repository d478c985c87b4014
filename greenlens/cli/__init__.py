"""The `greenlens` command and its subcommands (main dispatches to train, predict and deploy)."""
