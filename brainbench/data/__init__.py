"""Data: subject records, sources, preprocessing, cache and splits."""
