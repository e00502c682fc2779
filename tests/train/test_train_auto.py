from tailor.train.auto import choose_method
from tailor.train.estimate import Estimate

# Measured figures for 10,000 rows over 3 epochs: full 100 s of training per epoch (90 + 10 validation), head 25 s.
ESTIMATES = {"full": Estimate("full", {"data": 5.0, "train": 270.0, "validation": 30.0, "test": 4.0, "gate": 12.0},
                              epochs=3),
             "head": Estimate("head", {"data": 5.0, "train": 25.0, "test": 4.0, "gate": 3.0}, epochs=300)}


CONTRASTIVE = {**ESTIMATES, "contrastive": Estimate("contrastive", {"data": 5.0, "train": 40.0, "test": 4.0,
                                                                     "gate": 12.0}, epochs=1)}


def test_few_examples_per_class_choose_head_without_a_contrastive_estimate():
    choice = choose_method({f"c{i}": 8 for i in range(10)}, ESTIMATES, None)
    assert choice.method == "head"
    assert choice.reason == ("few examples per class (median 8 < 30): a linear head on the frozen encoder "
                             "generalises best")
    assert choice.estimates is ESTIMATES


def test_few_examples_per_class_choose_contrastive_when_it_fits_the_budget():
    counts = {f"c{i}": 8 for i in range(10)}
    choice = choose_method(counts, CONTRASTIVE, None)
    assert (choice.method, choice.reason) == (
        "contrastive", "few examples per class (median 8 < 30): the encoder tuned contrastively on pairs of the "
                       "labels, then a linear head (estimated 40s of training here; +2.6 to +3.5 macro-F1 over a "
                       "frozen encoder's head at 8 per class)")
    assert choose_method(counts, CONTRASTIVE, 40).method == "contrastive"
    tight = choose_method(counts, CONTRASTIVE, 30)
    assert (tight.method, tight.reason) == (
        "head", "few examples per class (median 8 < 30): a linear head on the frozen encoder generalises best; "
                "contrastive's 40s exceeds the 30s budget")


def test_enough_data_and_no_budget_choose_full():
    choice = choose_method({"a": 500, "b": 400}, ESTIMATES, None)
    assert choice.method == "full"
    assert choice.reason == ("900 rows, median 450 per class: full fine-tuning is the most accurate and no time "
                             "budget (estimated 5m00s of training)")


def test_budget_decides_between_full_epochs_and_head():
    counts = {"a": 5000, "b": 5000}
    assert (ESTIMATES["full"].training_s, ESTIMATES["full"].per_epoch_s, ESTIMATES["head"].training_s) == \
        (300.0, 100.0, 25.0)
    assert choose_method(counts, ESTIMATES, 400).method == "full"
    partial = choose_method(counts, ESTIMATES, 250)
    assert (partial.method, partial.reason) == (
        "full", "about 2 of 3 epochs of full fine-tuning fit the 250s budget (estimated 1m40s each); "
                "the deadline stops training after them")
    head = choose_method(counts, ESTIMATES, 60)
    assert head.method == "head"
    assert head.reason == ("one epoch of full fine-tuning (estimated 1m40s) exceeds the 60s budget; a linear head "
                           "fits (estimated 25s)")
