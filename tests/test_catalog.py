import json

import pytest

import tailor
from tailor.catalog import CATALOG, resolve_base
from tailor.errors import UsageError


def test_embedded_minilm_resolves_to_a_local_directory():
    base = resolve_base("minilm-l6")
    assert base.name == "minilm-l6"
    config = json.loads((__import__("pathlib").Path(base.path) / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("bert", 384, 6)
    assert resolve_base(None) == base
    assert list(CATALOG) == ["minilm-l6", "me5-small", "smollm2-135m-instruct"]


def test_unknown_names_and_bad_directories(tmp_path):
    with pytest.raises(UsageError, match="^unknown base model 'bert-huge': use a catalog id \\(minilm-l6, me5-small, smollm2-135m-instruct\\) or a local model directory$"):
        resolve_base("bert-huge")
    with pytest.raises(UsageError, match="has no config.json"):
        resolve_base(str(tmp_path))


def test_a_fine_tuned_hf_export_is_a_base_for_new_labels(trained, tmp_path, small_train_csv):
    from tailor.models.export import export_version

    export_version("small-full", "hf", tmp_path / "hf")
    rows = small_train_csv.read_text().splitlines()[1:]
    binary = tmp_path / "binary.csv"
    binary.write_text("text,label\n" + "\n".join(r.rsplit(",", 1)[0] + (",up" if r.endswith("bullish") else ",other")
                                                  for r in rows) + "\n")
    result = tailor.fine_tune(binary, name="from-export", base=str(tmp_path / "hf"), method="full", epochs=1, seed=0)
    assert result.version.base_model == str((tmp_path / "hf").resolve())
    assert tailor.load_model("from-export").labels == ["other", "up"]
    assert result.metrics["roc_auc"] is not None  # binary tasks report ROC-AUC


def test_auto_base_follows_the_script_of_the_texts():
    from tailor.catalog import choose_base

    assert choose_base(["招商银行信用卡逾期了怎么办", "股票大涨"])[0] == "me5-small"
    base, reason = choose_base(["Card payment declined again", "Where is my refund?"])
    assert base == "minilm-l6" and reason.startswith("100% of letters are Latin")
    with pytest.raises(UsageError, match="base 'auto' is chosen from the training texts"):
        resolve_base("auto")
