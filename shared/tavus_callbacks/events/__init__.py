"""Event types: normalize any callback into one typed Event."""
