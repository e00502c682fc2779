"""Likely label errors: deliberately flipped labels must rise to the top of the list."""

import random

import numpy as np
import pytest

from tailor.data.label_issues import (MIN_CONFIDENCE, agreement_and_kappa, find_label_issues,
                                       search_label_issues)

INTENTS = {
    "card_arrival": ["my new card has not arrived yet", "when will my card be delivered",
                     "still waiting for the card you posted", "how long does card delivery take",
                     "the card I ordered never came in the mail", "track the delivery of my card"],
    "refund": ["I want my money back for this order", "how do I get a refund",
               "the merchant promised a refund but nothing came", "refund the payment for the broken item",
               "can you return the money for a cancelled purchase", "my refund is missing from the account"],
    "pin_blocked": ["my PIN is blocked after three tries", "I entered the wrong PIN too many times",
                    "unblock my PIN please", "the ATM locked my PIN code",
                    "how can I reset a blocked PIN", "PIN locked out and I cannot pay"],
    "exchange_rate": ["what exchange rate do you use for euros", "why was the currency rate so bad",
                      "how much is a dollar in pounds today", "is the exchange rate fixed at the weekend",
                      "which rate applies when I pay abroad", "the conversion rate on my purchase looks wrong"],
}
OPENERS = ["", "hi,", "hello,", "quick question:", "please help,", "urgent:"]
CLOSERS = ["", "thanks", "thank you", "asap", "cheers", "please advise"]


def customer_messages(per_class: int, seed: int) -> tuple[list[str], list[str]]:
    """Intent messages built from phrases, openers and closers, like a small support-ticket export."""
    rng = random.Random(seed)
    texts, labels = [], []
    for label, phrases in INTENTS.items():
        for _ in range(per_class):
            texts.append(" ".join(p for p in (rng.choice(OPENERS), rng.choice(phrases), rng.choice(CLOSERS)) if p))
            labels.append(label)
    return texts, labels


def flip(labels: list[str], count: int, seed: int) -> tuple[list[str], set[int]]:
    rng = random.Random(seed)
    flipped = set(rng.sample(range(len(labels)), count))
    classes = sorted(set(labels))
    noisy = [rng.choice([c for c in classes if c != label]) if i in flipped else label
             for i, label in enumerate(labels)]
    return noisy, flipped


def test_flipped_labels_dominate_the_top():
    texts, labels = customer_messages(per_class=60, seed=0)
    noisy, flipped = flip(labels, count=12, seed=1)
    issues = find_label_issues(texts, noisy, seed=0)
    top = {issue.index for issue in issues[:len(flipped)]}
    assert len(flipped & top) / len(flipped) >= 0.9  # recall at 12: 11 of the 12 flipped rows
    assert len(flipped & top) / len(top) >= 0.9  # and nearly nothing else
    for issue in issues:
        assert issue.label == noisy[issue.index]
        assert issue.suggested != issue.label
        assert issue.confidence > issue.given_prob
    flipped_issues = [issue for issue in issues if issue.index in flipped]
    assert sum(issue.suggested == labels[issue.index] for issue in flipped_issues) >= 0.9 * len(flipped_issues)


def test_ranked_by_margin_and_capped():
    texts, labels = customer_messages(per_class=60, seed=0)
    noisy, _ = flip(labels, count=12, seed=1)
    issues = find_label_issues(texts, noisy, seed=0, max_issues=5)
    assert len(issues) == 5
    margins = [issue.confidence - issue.given_prob for issue in issues]
    assert margins == sorted(margins, reverse=True)
    assert find_label_issues(texts, noisy, seed=0) == find_label_issues(texts, noisy, seed=0)


def test_too_little_data_gives_no_issues():
    texts, labels = customer_messages(per_class=4, seed=0)  # 16 rows
    assert find_label_issues(texts, labels) == []
    texts, labels = customer_messages(per_class=30, seed=0)
    assert find_label_issues(texts, ["one"] * len(texts)) == []
    singletons = [f"class {i}" for i in range(len(texts))]  # no class has two rows
    assert find_label_issues(texts, singletons) == []


def test_texts_sharing_no_terms_give_no_issues():
    texts = [chr(0x4E00 + i) for i in range(40)]  # forty distinct single characters
    assert find_label_issues(texts, ["a", "b"] * 20) == []



def test_search_reports_how_far_its_model_can_be_trusted():
    texts, labels = customer_messages(per_class=60, seed=0)
    noisy, flipped = flip(labels, count=12, seed=1)
    search = search_label_issues(texts, noisy, seed=0)
    assert (search.rows_scored, search.agreement, len(search.issues)) == (240, 0.95, 11)
    assert search.kappa == pytest.approx(0.9333, abs=1e-4) and search.reliable
    assert {issue.index for issue in search.issues} <= flipped
    assert all(issue.confidence >= MIN_CONFIDENCE for issue in search.issues)


def test_labels_without_signal_flag_nothing_and_say_the_model_is_weak():
    texts, labels = customer_messages(per_class=60, seed=0)
    random.Random(5).shuffle(labels)  # labels unrelated to the texts: every disagreement is the model's guess
    search = search_label_issues(texts, labels, seed=0, max_issues=None)
    assert search.issues == []
    assert search.agreement == 0.2375 and search.kappa == pytest.approx(-0.0167, abs=1e-4)
    assert not search.reliable
    assert search_label_issues(texts[:10], labels[:10]) == search_label_issues([], [])
    assert not search_label_issues([], []).reliable


def test_agreement_and_kappa():
    # 3 of 4 agree; chance agreement is (2*1 + 2*3) / 16 = 0.5, so kappa is (0.75 - 0.5) / 0.5
    assert agreement_and_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == (0.75, 0.5)
    assert agreement_and_kappa(np.array([1, 1]), np.array([1, 1]), 2) == (1.0, 1.0)
