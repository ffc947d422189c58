"""torch.hub entry points: `torch.hub.load(REPO, 'mae3d_cnn', weights=PATH, source='local')`.

`weights` is an exported folder, a pretrained folder, a run record or an exported model's name
(safetensors only; pickled checkpoints are refused). Without it, `mae3d_cnn` is built from
scratch with the given config keys (width=32, depth=3, ...). Every network is in eval mode.
"""

dependencies = ["torch", "safetensors", "pydantic"]


def _weights(name: str, weights):
    from brainbench.errors import DataError
    from brainbench.loading import load_model

    model = load_model(weights)
    if name and model.name != name:
        raise DataError(f"{weights} holds a '{model.name}' model, not '{name}'.")
    return model.net


def mae3d_cnn(weights=None, **config):
    """The mae3d_cnn masked autoencoder: forward gives the reconstruction, .encode the embedding."""
    if weights is not None:
        return _weights("mae3d_cnn", weights)
    from brainbench.models.mae import BACKBONES
    from brainbench.registry import load_plugins

    load_plugins()
    backbone = BACKBONES["mae3d_cnn"]
    return backbone.network(backbone.config(**config)).eval()


def sfcn(weights):
    """A trained SFCN brain-age or classification network (forward gives its raw outputs)."""
    return _weights("sfcn", weights)


def model(weights):
    """Any brainbench model's network."""
    return _weights("", weights)
