"""Find rows whose label is probably wrong, in the spirit of confident learning (Northcutt et al., 2021).

A multinomial naive Bayes model on TF-IDF features (word 1-2 grams and character 2-4 grams, which work for
English and for Chinese without a word segmenter) predicts every row out of fold; one temperature, fitted
to the out-of-fold log-likelihood, softens its over-confident probabilities. Class ``j`` has a confidence
threshold ``t_j``: the mean out-of-fold probability of ``j`` over the rows labelled ``j``. A row labelled
``i`` is an issue when some other class ``j`` reaches its threshold and beats ``i``; the suggestion is the
most probable such ``j``, and issues are ranked by how far it beats ``i``.

Why naive Bayes: it is linear in log space and fits in one pass. On banking77 (10,003 rows, 77 classes,
2 CPU cores) the whole search takes about 3 s and ranks deliberately flipped labels nearly as well as a
linear SVM (6-10 s) and better than SGD logistic regression (13 s); LogisticRegression took 80 s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

MIN_ROWS = 20
MAX_FOLDS = 5
_NB_ALPHA = 0.05
_TEMPERATURES = np.geomspace(0.1, 100, 31)  # searched for the best out-of-fold log-likelihood


@dataclass(frozen=True)
class LabelIssue:
    """A row whose given label the out-of-fold model doubts.

    Attributes:
        index: the row's position in the texts passed in.
        label: the given label.
        suggested: the label the model prefers.
        confidence: out-of-fold probability of ``suggested``.
        given_prob: out-of-fold probability of ``label``.
    """

    index: int
    label: str
    suggested: str
    confidence: float
    given_prob: float


def find_label_issues(texts: list[str], labels: list[str], *, seed: int = 0,
                      max_issues: int | None = 50) -> list[LabelIssue]:
    """Likely label errors, most certain first.

    Rows of classes with fewer than two rows are left out (they cannot be predicted out of fold).

    Args:
        texts / labels: parallel lists.
        seed: fixes the folds.
        max_issues: most issues returned; None for all.

    Returns:
        Issues ranked by ``confidence - given_prob``, descending; empty when fewer than two classes have two
        rows, fewer than 20 rows remain, or the texts share no terms.
    """
    counts = Counter(labels)
    usable = [i for i, label in enumerate(labels) if counts[label] >= 2]
    classes = sorted({labels[i] for i in usable})
    if len(classes) < 2 or len(usable) < MIN_ROWS:
        return []
    class_id = {label: k for k, label in enumerate(classes)}
    y = np.array([class_id[labels[i]] for i in usable])
    folds = min(MAX_FOLDS, min(counts[label] for label in classes))
    probs = out_of_fold_probabilities([texts[i] for i in usable], y, folds=folds, seed=seed)
    if probs is None:
        return []
    rows = np.arange(len(y))
    given = probs[rows, y]
    thresholds = np.array([probs[y == k, k].mean() for k in range(len(classes))])
    candidates = (probs >= thresholds) & (probs > given[:, None])  # never the given class: p_i > p_i is false
    flagged = np.flatnonzero(candidates.any(axis=1))
    suggested = np.where(candidates, probs, -1.0).argmax(axis=1)
    margin = probs[rows, suggested] - given
    ranked = flagged[np.argsort(-margin[flagged], kind="stable")][:max_issues]
    return [
        LabelIssue(index=usable[r], label=labels[usable[r]], suggested=classes[suggested[r]],
                   confidence=float(probs[r, suggested[r]]), given_prob=float(given[r]))
        for r in ranked
    ]


def out_of_fold_probabilities(texts: list[str], y: np.ndarray, *, folds: int, seed: int) -> np.ndarray | None:
    """Class probabilities for every row from a model that never saw it (stratified k-fold).

    Args:
        texts: the rows.
        y: class ids ``0..K-1``; every class has at least ``folds`` rows.
        folds: number of folds, at least 2.
        seed: fixes the fold assignment.

    Returns:
        An ``(n, K)`` array whose rows sum to 1, or None when the texts share no terms at all.
    """
    from scipy.special import log_softmax
    from sklearn.model_selection import StratifiedKFold
    from sklearn.naive_bayes import MultinomialNB

    features = tfidf_features(texts)
    if features is None:
        return None
    log_probs = np.zeros((len(y), int(y.max()) + 1))
    for train, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, y):
        model = MultinomialNB(alpha=_NB_ALPHA).fit(features[train], y[train])
        log_probs[held_out] = model.predict_log_proba(features[held_out])
    rows = np.arange(len(y))
    temperature = min(_TEMPERATURES, key=lambda t: -log_softmax(log_probs / t, axis=1)[rows, y].sum())
    return np.exp(log_softmax(log_probs / temperature, axis=1))


def tfidf_features(texts: list[str]):
    """Sparse TF-IDF features: word 1-2 grams and character 2-4 grams (within words) seen in two rows or more.

    Returns:
        A CSR matrix, or None when no term occurs twice.
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    blocks = []
    for analyzer, ngram_range in (("word", (1, 2)), ("char_wb", (2, 4))):
        vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram_range, min_df=2, sublinear_tf=True)
        try:
            blocks.append(vectorizer.fit_transform(texts))
        except ValueError:  # scikit-learn's "empty vocabulary": no term of this kind occurs twice
            continue
    return hstack(blocks).tocsr() if blocks else None
