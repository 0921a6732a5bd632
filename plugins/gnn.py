"""gnn family (work in progress)."""
