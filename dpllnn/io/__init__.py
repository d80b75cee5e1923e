"""dpllnn.io."""
