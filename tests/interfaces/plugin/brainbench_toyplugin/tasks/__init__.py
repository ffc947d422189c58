"""The plugin's task YAMLs live in this folder."""
