"""dpllnn.examples."""
