from pathlib import Path

import pytest

from brainbench.api import plan, resolve_config
from brainbench.config import ConfigError, build_config, deep_merge, load_yaml, parse_overrides


def test_overrides_parse_yaml_values():
    tree = parse_overrides(["trainer.max_epochs=3", "seeds=[1, 2]", "data.path=/x", "a.b.c=true"])
    assert tree == {
        "trainer": {"max_epochs": 3},
        "seeds": [1, 2],
        "data": {"path": "/x"},
        "a": {"b": {"c": True}},
    }


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1", ".a=1"])
def test_malformed_override_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides([bad])


def test_deep_merge_keeps_siblings_and_does_not_mutate():
    base = {"trainer": {"lr": 1, "max_epochs": 2}}
    merged = deep_merge(base, {"trainer": {"lr": 3}})
    assert merged == {"trainer": {"lr": 3, "max_epochs": 2}}
    assert base["trainer"]["lr"] == 1


def test_layers_apply_in_order_and_the_last_wins():
    exp = resolve_config("mri/age", "sfcn", overrides=["trainer.max_epochs=2"], debug=True)
    assert exp.config.trainer.max_epochs == 2  # command line beats --debug
    assert exp.config.data.preset == "debug"  # --debug beats defaults
    assert exp.config.task == "mri/age" and exp.config.model_name == "sfcn"


def test_unknown_key_names_key_layer_and_suggestion():
    with pytest.raises(ConfigError) as err:
        resolve_config("mri/age", "ridge", overrides=["trainer.max_epoch=3"])
    msg = str(err.value)
    assert "trainer.max_epoch" in msg and "command line" in msg and "max_epochs" in msg


def test_unknown_model_parameter_suggests_the_models_own_key():
    with pytest.raises(ConfigError) as err:
        resolve_config("mri/age", "sfcn", overrides=["model.chanels=[4,8]"])
    assert "model.chanels" in str(err.value) and "channels" in str(err.value)


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="trainer.lr"):
        resolve_config("mri/age", "sfcn", overrides=["trainer.lr=-1"])
    with pytest.raises(ConfigError, match="split"):
        resolve_config(
            "mri/age", "sfcn", overrides=["split.val_fraction=0.5", "split.test_fraction=0.5"]
        )


def test_config_file_layer_and_its_errors(tmp_path: Path):
    good = tmp_path / "exp.yaml"
    good.write_text("trainer:\n  batch_size: 4\n")
    assert resolve_config("mri/age", "sfcn", config_file=good).config.trainer.batch_size == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match=r"trainer.batchsize.*bad.yaml.*batch_size"):
        resolve_config("mri/age", "sfcn", config_file=bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_yaml(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("a: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml"):
        load_yaml(evil)


def test_model_name_is_required():
    with pytest.raises(ConfigError, match="model"):
        build_config([("defaults", {"task": "mri/age", "model": {}})])


def test_a_model_key_goes_to_the_models_that_have_it():
    atlas, unet = plan(["mri/seg"], ["atlas", "unet"], overrides=["model.patch_size=[8,8,8]"])
    assert atlas.config.model_params == {} and unet.params.patch_size == (8, 8, 8)
    with pytest.raises(ConfigError, match=r"^model 'atlas': unknown config key 'model\.patch_s"):
        plan(["mri/seg"], ["atlas"], overrides=["model.patch_size=[8,8,8]"])
    with pytest.raises(ConfigError, match="model 'atlas'"):  # a key no model has
        plan(["mri/seg"], ["atlas", "unet"], overrides=["model.patch_sise=[8,8,8]"])


def test_a_key_hint_is_the_full_dotted_key():
    for given in ("max_epoch", "max_epochs", "trainer.max_epoch", "epochs"):
        with pytest.raises(ConfigError, match=r"Did you mean 'trainer\.max_epochs'\?$"):
            resolve_config("mri/age", "ridge", overrides=[f"{given}=3"])


def test_a_task_sets_its_grid_its_models_parameters_and_its_debug_run():
    unet = resolve_config("mri/seg", "unet").config
    assert unet.preprocess.spacing == 2.0 and unet.model_params["patch_size"] == [32, 32, 32]
    assert unet.trainer.scheduler == "cosine" and unet.trainer.lr == 0.01  # the model's own lr
    atlas = resolve_config("mri/seg", "atlas").config  # unet's parameters are not atlas's
    assert atlas.preprocess.spacing == 2.0 and "patch_size" not in atlas.model_params
    debug = resolve_config("mri/seg", "unet", debug=True).config
    assert debug.preprocess.spacing == 4.0 and debug.trainer.max_epochs == 30  # after --debug
    assert debug.data.preset == "debug"
    mine = ["preprocess.spacing=8", "model.patch_size=[8,8,8]"]
    ours = resolve_config("mri/seg", "unet", debug=True, overrides=mine).config
    assert ours.preprocess.spacing == 8 and ours.model_params["patch_size"] == [8, 8, 8]
    assert resolve_config("mri/age", "sfcn", debug=True).config.preprocess.spacing == 8.0
