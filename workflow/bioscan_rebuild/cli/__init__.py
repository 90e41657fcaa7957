"""The `bioscan-rebuild` command: ``main`` composes one module per command group."""
