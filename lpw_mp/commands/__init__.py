"""The command line: one module per subcommand, on top of the harness and results."""
