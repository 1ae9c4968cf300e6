"""CLI subcommands, one module per stage; each exposes ``register(subparsers, common)``."""
