"""The ``dispatch`` subcommands, one module per group; :mod:`engine.cli` parses the
arguments and hands each its namespace."""
