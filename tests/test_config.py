"""The one config mechanism: presets, dotted key=value overrides, and errors that name the key."""

import pytest

from timesformer_lite.config import Config, ConfigError, ModelConfig, load_config, model_config, presets


def test_shipped_presets_include_smoke_toy_ucf101_k400():
    assert {"smoke", "toy", "ucf101", "k400"} <= set(presets())


@pytest.mark.parametrize("name", ["smoke", "toy", "ucf101", "k400"])
def test_every_preset_loads_into_typed_dataclasses(name):
    cfg = load_config(name)
    assert isinstance(cfg, Config) and isinstance(cfg.model, ModelConfig)
    assert cfg.train.name == name
    assert isinstance(cfg.model.mlp_ratio, float)


def test_k400_preset_is_the_reference_recipe():
    cfg = load_config("k400")
    m, t = cfg.model, cfg.train
    assert (m.img_size, m.patch_size, m.num_frames, m.embed_dim, m.depth, m.num_heads) == (224, 16, 8, 768, 12, 12)
    assert m.num_classes == 400 and m.attention_type == "divided_space_time"
    assert m.mlp_hidden == 3072 and load_config("toy").model.mlp_hidden == 256  # embed_dim * mlp_ratio
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.epochs, t.milestones) == (
        "sgd",
        0.005,
        0.9,
        1e-4,
        15,
        [11, 14],
    )


def test_dotted_overrides_reach_into_sections_and_parse_yaml_values():
    cfg = load_config("toy", ["model.depth=4", "train.lr=3e-4", "data.hflip=true", "data.train_scale=[40, 48]"])
    assert cfg.model.depth == 4
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.data.hflip is True
    assert cfg.data.train_scale == [40, 48]


def test_int_given_for_float_field_becomes_float():
    cfg = load_config("toy", ["train.lr=1"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_unknown_key_is_an_error_that_names_it_and_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"model\.dept.*did you mean 'depth'"):
        load_config("toy", ["model.dept=4"])
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'"):
        load_config("toy", ["modle.depth=4"])


def test_wrong_type_is_an_error_that_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.depth expects an integer, got 'four'"):
        load_config("toy", ["model.depth=four"])
    with pytest.raises(ConfigError, match=r"data\.hflip expects true or false"):
        load_config("toy", ["data.hflip=3"])
    with pytest.raises(ConfigError, match=r"train\.milestones\[1\] expects an integer"):
        load_config("toy", {"train.milestones": [1, "x"]})


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        load_config("toy", ["model.depth"])


def test_yaml_file_preset_and_unknown_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  depth: 3\n  num_classes: 5\ntrain:\n  epochs: 2\n")
    cfg = load_config(path, ["train.epochs=7"])
    assert (cfg.model.depth, cfg.model.num_classes, cfg.train.epochs) == (3, 5, 7)
    assert cfg.model.embed_dim == 768  # untouched fields keep their defaults
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*smoke"):
        load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_unknown_key_inside_a_yaml_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epoch: 2\n")
    with pytest.raises(ConfigError, match=r"train\.epoch"):
        load_config(path)


def test_config_round_trips_through_its_dict_and_yaml():
    cfg = load_config("smoke", ["model.depth=3"])
    assert load_config(cfg.to_dict()) == cfg
    assert load_config(cfg) == cfg
    import yaml

    assert load_config(yaml.safe_load(cfg.to_yaml())) == cfg


def test_model_config_validates_attention_type_and_heads():
    with pytest.raises(ConfigError, match="attention_type='spatial'"):
        ModelConfig(attention_type="spatial")
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(embed_dim=100, num_heads=3)
    assert model_config({"depth": 2}, num_heads=4).num_heads == 4
    with pytest.raises(ConfigError, match="model.heads"):
        model_config(heads=4)


def test_num_workers_is_a_count_or_auto():
    assert load_config("toy").data.num_workers == "auto"
    assert load_config("toy", ["data.num_workers=3"]).data.num_workers == 3
    for bad in ("-1", "four"):
        with pytest.raises(
            ConfigError, match=r"data.num_workers=.* must be a number of processes \(0 or more\) or auto"
        ):
            load_config("toy", [f"data.num_workers={bad}"])
