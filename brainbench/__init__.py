"""brainbench: pretrain, fine-tune and benchmark foundation models of the brain across the lifespan."""

__version__ = "0.1.0"
