"""Data sources: readers that turn a dataset on disk into subject records."""
