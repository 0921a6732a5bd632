"""autoencoder family (work in progress)."""
