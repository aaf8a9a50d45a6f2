"""CLI subcommands, one module each (see ee_bench.cli.SUBCOMMANDS)."""
