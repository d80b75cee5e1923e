"""dpllnn.bounds."""
