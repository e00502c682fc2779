import pytest

from tailor.errors import UsageError
from tailor.train.config import TrainConfig, load_preset, preset_names


def test_presets_are_listed():
    assert preset_names() == ["default", "fast", "quality"]


@pytest.mark.parametrize("name", ["default", "fast", "quality"])
def test_every_preset_loads(name):
    cfg = load_preset(name)
    assert isinstance(cfg, TrainConfig)
    assert cfg.base == "auto"


def test_default_preset_values():
    cfg = load_preset("default")
    assert (cfg.method, cfg.epochs, cfg.batch_size, cfg.max_length, cfg.lr) == ("auto", 4, 16, 128, 1e-4)


def test_overrides_apply_and_none_is_ignored():
    cfg = load_preset("fast", epochs=3, lr=None)
    assert cfg.epochs == 3 and cfg.batch_size == 32


def test_unknown_key_is_rejected():
    with pytest.raises(UsageError, match="^invalid training config: epoch: unknown setting$"):
        load_preset("default", epoch=3)


def test_bad_value_is_rejected_with_field_name():
    with pytest.raises(UsageError, match=r"^invalid training config: batch_size: Input should be greater than or equal to 1$"):
        load_preset("default", batch_size=0)
    with pytest.raises(UsageError, match="method: Input should be 'auto', 'full', 'lora', 'head' or 'contrastive'"):
        load_preset("default", method="qlora")


def test_contradictory_lora_settings_are_rejected():
    with pytest.raises(UsageError, match="lora_alpha=1 is far below lora_r=64"):
        load_preset("default", lora_r=64, lora_alpha=1)


def test_unknown_preset():
    with pytest.raises(UsageError, match="unknown preset 'huge'; presets are: default, fast, quality"):
        load_preset("huge")
