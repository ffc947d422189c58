"""brainbench: pretrain, fine-tune and benchmark brain foundation models across the lifespan."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`brainbench.load_model` without importing torch at `import brainbench`."""
    if name == "load_model":
        from brainbench.api import load_model

        return load_model
    raise AttributeError(f"module 'brainbench' has no attribute {name!r}")
