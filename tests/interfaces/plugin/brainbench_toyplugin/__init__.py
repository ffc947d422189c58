"""A tiny third-party brainbench plugin: one model, one task, one data source (for the tests)."""
