"""protime."""
