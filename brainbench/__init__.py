"""brainbench: pretrain, fine-tune and benchmark brain foundation models across the lifespan."""

__version__ = "0.1.0"
