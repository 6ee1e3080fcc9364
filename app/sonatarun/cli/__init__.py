"""Command-line interface: one module per subcommand, registered in :mod:`sonatarun.cli.main`."""
