"""The typed config schema: YAML loading, inheritance, overrides and validation errors."""

from __future__ import annotations

import pytest
import yaml

from lenshpc.config import Config, dump_config, flatten, load_config
from lenshpc.errors import ConfigError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_the_thesis_hyperparameters():
    cfg = load_config()
    assert (cfg.data.chunk_size, cfg.data.val_size, cfg.train.batch_size) == (4096, 1102, 64)
    assert cfg.train.chunks == 8000 and cfg.train.patience == 1200
    assert cfg.train.learning_rate == pytest.approx(1e-4) and cfg.train.optimizer == "adam"
    assert (cfg.data.alpha_min, cfg.data.alpha_max) == (0.02, 0.30)
    assert (cfg.augment.zoom_min, cfg.augment.zoom_max, cfg.augment.shift, cfg.augment.flip) == (1.0, 1.05, 4.0, 0.5)
    assert cfg.loss.beta == pytest.approx(0.17)


def test_extends_merges_parent_then_child(tmp_path):
    write(tmp_path / "base.yaml", {"train": {"chunks": 10, "batch_size": 32}, "loss": {"name": "bce"}})
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml", "train": {"chunks": 20}, "loss": {"name": "f1_soft"}})
    cfg = load_config(child)
    assert cfg.train.chunks == 20 and cfg.train.batch_size == 32 and cfg.loss.name == "f1_soft"


def test_set_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(None, ["train.chunks=7", "train.learning_rate=3e-4", "augment.enabled=false", "model.params={l2: 0.0}"])
    assert cfg.train.chunks == 7 and cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.augment.enabled is False and cfg.model.params == {"l2": 0.0}


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    bad = write(tmp_path / "bad.yaml", {"train": {"chunk_size": 10}})
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert "bad.yaml" in msg and "train.chunk_size" in msg and "train.chunks" in msg


def test_unknown_top_level_key_suggests(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        load_config(None, ["trian.chunks=3"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.chunks=abc", "must be an integer"),
        ("train.chunks=0", "below the minimum"),
        ("augment.flip=1.5", "above the maximum"),
        ("augment.enabled=maybe", "true or false"),
        ("selection.metric=val_fbeta", "is not one of"),
        ("data.alpha_min=0.5", "must not exceed"),
        ("data.preprocess=maxtree", "segmented_path"),
    ],
)
def test_bad_values_are_rejected_with_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)
    assert override.split("=")[0].split(".")[-1] in str(err.value)


def test_circular_extends_and_missing_file(tmp_path):
    write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["seed=5", "loss.name=fbeta_soft"])
    dump_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and isinstance(again, Config)
    flat = flatten(cfg.to_dict())
    assert flat["loss.name"] == "fbeta_soft" and flat["seed"] == 5


def test_repo_configs_all_load(repo_root):
    files = sorted((repo_root / "configs").rglob("*.yaml"))
    # sweeps/, ensembles/ and rounds/ hold sweep, ensemble and rounds specs (tested in test_sweep / test_ensemble /
    # test_mine)
    files = [f for f in files if not {"sweeps", "ensembles", "rounds"} & set(f.parts)]
    assert files, "configs/ should ship YAML configs"
    for path in files:
        if "maxtree" in path.name:
            continue  # needs a segmented dataset path; checked in test_maxtree
        load_config(path)
