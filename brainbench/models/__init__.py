"""Model families, one file each, registered by name in brainbench.registry."""
