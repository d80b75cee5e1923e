"""dpllnn.reduce."""
