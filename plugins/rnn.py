"""rnn family (work in progress)."""
