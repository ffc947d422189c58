"""A broken plugin: registers a model under a name brainbench already uses."""

from brainbench.config import StrictModel
from brainbench.registry import register_model


@register_model("sfcn", kind="torch", config=StrictModel, description="plugin reusing 'sfcn'")
def build(params, *, task, trainer):
    raise NotImplementedError
