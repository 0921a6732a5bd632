"""transformer family (work in progress)."""
