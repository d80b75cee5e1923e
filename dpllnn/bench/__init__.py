"""dpllnn.bench."""
