from tailor.train.auto import choose_method, estimate_seconds


def test_few_examples_per_class_choose_head():
    choice = choose_method({f"c{i}": 8 for i in range(10)}, 20.0, 3, "cpu", None)
    assert choice.method == "head"
    assert choice.reason.startswith("few examples per class (median 8 < 30)")


def test_enough_data_and_no_budget_choose_full():
    choice = choose_method({"a": 500, "b": 400}, 30.0, 3, "cpu", None)
    assert choice.method == "full"
    assert "no time budget" in choice.reason


def test_budget_decides_between_full_epochs_and_head():
    counts = {"a": 5000, "b": 5000}
    est = estimate_seconds(10_000, 30.0, 3, "cpu")
    assert est == {"full": 300.0, "head": 25.0}
    assert choose_method(counts, 30.0, 3, "cpu", 400).method == "full"
    partial = choose_method(counts, 30.0, 3, "cpu", 250)
    assert (partial.method, partial.reason) == (
        "full", "about 2 of 3 epochs of full fine-tuning fit the 250s budget (estimated 100s each); "
                "the deadline stops training after them")
    head = choose_method(counts, 30.0, 3, "cpu", 60)
    assert head.method == "head"
    assert head.reason == "one epoch of full fine-tuning (estimated 100s) exceeds the 60s budget; a linear head fits (estimated 25s)"
