"""The `katib-nas` command: one module per subcommand, each registering its arguments."""
