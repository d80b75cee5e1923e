"""dpllnn.search."""
