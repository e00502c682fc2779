"""Script shares count letters only, sample evenly, and decide when a multilingual base model is needed."""

import pytest

from tailor.data.language import detect_script, needs_multilingual, script_of

ZH = ["今天天气很好，我们去公园散步吧。", "这家公司的股票今天上涨了百分之八。", "请把报告发给我。"]
EN = ["The quarterly report is due on Friday.", "Shares rose 8% after the earnings call.", "Send me the report."]


@pytest.mark.parametrize("char, script", [
    ("a", "latin"), ("É", "latin"), ("ệ", "latin"), ("ß", "latin"), ("Ａ", "latin"),
    ("中", "cjk"), ("々", "cjk"), ("か", "cjk"), ("カ", "cjk"), ("ｶ", "cjk"), ("한", "cjk"), ("𠀀", "cjk"),
    ("Ж", "cyrillic"), ("ё", "cyrillic"), ("ع", "arabic"), ("ﻻ", "arabic"),
    ("α", "other"), ("א", "other"), ("क", "other"), ("ก", "other"),
    ("7", None), ("$", None), ("，", None), ("😀", None), (" ", None), ("_", None),
])
def test_script_of_each_character(char, script):
    assert script_of(char) == script


def test_shares_count_letters_only():
    shares = detect_script(["abc 123 $$$ 😀😀", "中文！", "Жж"])
    assert shares["letters"] == 7
    assert shares["texts"] == 3
    assert shares["latin"] == pytest.approx(3 / 7)
    assert shares["cjk"] == pytest.approx(2 / 7)
    assert shares["cyrillic"] == pytest.approx(2 / 7)
    assert shares["arabic"] == shares["other"] == 0.0
    assert sum(shares[s] for s in ("cjk", "latin", "cyrillic", "arabic", "other")) == pytest.approx(1.0)


def test_no_letters_gives_zero_shares():
    shares = detect_script(["123", "!!!", ""])
    assert shares == {"cjk": 0.0, "latin": 0.0, "cyrillic": 0.0, "arabic": 0.0, "other": 0.0, "letters": 0,
                      "texts": 3}
    assert needs_multilingual(["123 456"]) == (False, "no letters found")


def test_sample_is_spread_over_the_whole_set():
    texts = ["english words"] * 500 + ["中文文本"] * 500  # sorted: the head alone would say "all Latin"
    shares = detect_script(texts, sample=100)
    assert shares["texts"] == 100
    assert shares["cjk"] == pytest.approx(200 / (200 + 600))  # 50 texts x 4 Han, 50 x 12 Latin


def test_accepts_any_iterable():
    assert detect_script(t for t in ZH)["cjk"] == 1.0


def test_chinese_needs_a_multilingual_model():
    assert needs_multilingual(ZH) == (True, "100% of letters are CJK")


def test_english_with_tickers_and_numbers_does_not():
    assert needs_multilingual(EN + ["$TSLA +8% 😀"]) == (False, "100% of letters are Latin")


def test_mixed_data_reports_the_dominant_script():
    texts = ["今天天气很好我们去公园散步", "hello"]  # 13 Han vs 5 Latin letters
    assert needs_multilingual(texts) == (True, "72% of letters are CJK")


def test_threshold_is_more_than_thirty_percent():
    assert needs_multilingual(["abcdefg", "中文中"]) == (False, "70% of letters are Latin")  # exactly 30%
    assert needs_multilingual(["abcdef", "中文中"]) == (True, "33% of letters are CJK")


def test_a_mix_of_minor_scripts_is_named_in_full():
    texts = ["abcdefghijklm", "中文中文", "Жжжж", "عربي"]  # 13 Latin, 4 CJK, 4 Cyrillic, 4 Arabic letters
    assert needs_multilingual(texts) == (True, "48% of letters are non-Latin (CJK 16%, Cyrillic 16%, Arabic 16%)")
