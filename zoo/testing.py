"""The plugin contract kit (work in progress)."""
