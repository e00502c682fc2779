"""Counterfactual checks: the shipped term lists, swaps with word boundaries and case (English) and substrings
(Chinese), a user's terms merged in front, and the flip count with a real predictor function."""

import json

import pytest

from tailor.errors import DataError
from tailor.eval.counterfactual import (build_swapper, counterfactual_check, load_terms, read_terms,
                                        shipped_terms)


def test_the_shipped_lists_load_and_cover_both_languages():
    terms = shipped_terms()
    assert set(terms) == {"gender", "names", "ethnicity", "region"}
    assert {("he", "she"), ("他", "她"), ("先生", "女士")} <= set(terms["gender"])


def test_english_swaps_keep_word_boundaries_and_case():
    swap = build_swapper(shipped_terms()).swap
    assert swap("He said she would call Mr. Smith; HIS wife agreed.") == (
        "She said he would call Mrs. Smith; HERS husband agreed.",
        ["He->She", "she->he", "Mr->Mrs", "HIS->HERS", "wife->husband"])
    # inside a word, nothing is swapped: "these", "shell", "mankind", "heat"
    assert swap("these shells heat mankind") == ("these shells heat mankind", [])
    # the first pair naming a term decides: her -> him (him/her comes before his/hers)
    assert swap("her") == ("him", ["her->him"])


def test_chinese_swaps_are_substrings_longest_first():
    swap = build_swapper(shipped_terms()).swap
    assert swap("他是男老师，那位女士是北方人") == ("她是女老师，那位先生是南方人",
                                            ["他->她", "男->女", "女士->先生", "北方->南方"])


def test_a_users_terms_are_merged_in_front(tmp_path):
    path = tmp_path / "terms.json"
    path.write_text(json.dumps({"region": [["Bavaria", "Saxony"]], "gender": [["her", "his"]]}), encoding="utf-8")
    terms = load_terms(path)
    swap = build_swapper(terms).swap
    assert swap("her farm in bavaria") == ("his farm in saxony", ["her->his", "bavaria->saxony"])
    assert terms["region"][0] == ("bavaria", "saxony") and ("northern", "southern") in terms["region"]


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", 'terms.json: expected an object of groups of pairs, e.g. {"gender": [["he", "she"]]}'),
    ('{"gender": "he"}', "terms.json: group 'gender' must be a list of pairs"),
    ('{"gender": [["he", "she"], ["he", "HE"]]}',
     "terms.json: group 'gender', pair 2: expected two different terms (strings of 1-64 characters), "
     'got ["he", "HE"]'),
    ("{nope", "terms.json: not JSON (Expecting property name enclosed in double quotes at line 1)"),
])
def test_bad_term_files_are_refused_with_the_place(content, message):
    with pytest.raises(DataError) as caught:
        read_terms(content, "terms.json")
    assert str(caught.value) == message


def test_flips_are_counted_per_group_with_examples():
    texts = ["he repaid the loan", "she repaid the loan", "the loan was repaid", "Mr Lee from the city",
             "他按时还款"]
    calls = []

    def predict(batch):  # a model that trusts men only, and ignores every other term
        calls.append(list(batch))
        return ["good" if (" he " in f" {t} " or "Mr " in t or "他" in t) else "bad" for t in batch]

    predictions = predict(texts)
    result = counterfactual_check(texts, predictions, predict, build_swapper(shipped_terms()), lines=[2, 3, 4, 5, 6])
    assert len(calls) == 2  # the originals, then every swapped text in one batch
    assert calls[1] == ["she repaid the loan", "he repaid the loan", "Mrs Lee from the village", "她按时还款"]
    assert {k: result[k] for k in ("checked", "flipped", "flip_rate", "by_group")} == {
        "checked": 4, "flipped": 4, "flip_rate": 1.0,
        "by_group": {"gender": {"checked": 4, "flipped": 4}, "region": {"checked": 1, "flipped": 1}}}
    assert result["examples"][2] == {"line": 5, "text": "Mr Lee from the city", "swapped": "Mrs Lee from the village",
                                     "swaps": ["Mr->Mrs", "city->village"], "predicted": "good",
                                     "swapped_predicted": "bad"}


def test_nothing_to_check_gives_no_rate():
    result = counterfactual_check(["the loan"], ["bad"], lambda batch: pytest.fail("no batch expected"),
                                  build_swapper(shipped_terms()))
    assert (result["checked"], result["flipped"], result["flip_rate"], result["examples"]) == (0, 0, None, [])
