"""Input drift: are the texts a version serves like the texts it was trained on?

A version carries its training set's fingerprint (:mod:`tailor.data.fingerprint`: a sample of up to 1,000
training texts, their lengths and main scripts, the unknown-token rate). A window of served answers is set
against it four ways:

- **embedding test** (the texts themselves, so only answers whose input was stored): the last
  :data:`WINDOW_TEXTS` stored texts and :data:`REFERENCE_TEXTS` training texts, embedded by the version's
  base encoder, compared by the maximum mean discrepancy (MMD) under an RBF kernel (bandwidth: the median
  distance), with a permutation p-value (:data:`PERMUTATIONS` relabellings), and by a domain classifier (a
  logistic regression telling served from training texts, its cross-validated ROC AUC: 0.5 means they cannot
  be told apart, 1.0 completely). The p-value says whether there is a difference; the AUC says how large it
  is. Both must agree (p < :data:`ALPHA` and AUC >= :data:`AUC_DRIFT`) for a verdict of drift.
- **length**: served texts' characters against the training texts' (two-sample Kolmogorov-Smirnov).
- **language**: the main script mix (Latin, CJK, Cyrillic, Arabic, none) against the training mix (total
  variation distance).
- **unknown tokens**: the share of served tokens that are the tokenizer's unknown token, beside training's.

The base encoder, not the fine-tuned one: the fine-tuned encoder has learned its training texts, so it sets
them apart from any new text, in distribution or not (bench/loop.py: held-out clinc150 texts against the
training texts gave AUC 0.65-0.71 and 8 false alarms in 20 windows through the fine-tuned encoder). To the
frozen base, training and held-out texts are alike.

The last three use the features every answer records, stored or not. Figures measured on MiniLM
embeddings of ../shared/datasets chose the thresholds. In distribution the domain AUC was 0.44-0.58 and the
MMD p-value 0.04-0.93 (clinc150's finance test split against its training split), but up to 0.66 with p
down to 0.03 for clinc150's validation and test texts against training texts of eight intents (bench/loop.py:
its official splits differ slightly from its training data); hence 0.70, not 0.65. Another source
(banking77, SMS) gave AUC 0.95-1.0 and the smallest p-value possible; a window that was half banking77
0.67-0.74 (bench/loop.py: drift from 100 requests after the shift, with windows of 200).

The section (``"drift"`` in the monitoring report)::

    {"verdict": "drift" | "no_drift" | "insufficient_data", "reasons": ["..."],
     "embedding": {"texts": 200, "reference_texts": 500, "mmd": 0.031, "p_value": 0.0005, "permutations": 1999,
                   "domain_auc": 0.97, "drifted": true} | {"texts": 12, "skipped": "..."},
     "length": {"texts": 840, "mean_chars": 48.1, "training_mean_chars": 61.0, "ks": 0.21, "p_value": 1e-9,
                "drifted": true},
     "language": {"served": {"latin": 0.9, ...}, "training": {"latin": 1.0}, "distance": 0.1, "drifted": false},
     "unknown_tokens": {"rate": 0.001, "training_rate": 0.0, "drifted": false},
     "novel_examples": [{"prediction_id": "pred-...", "text": "...", "novelty": 0.99}, ...]}
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from tailor.data.fingerprint import script_shares

ALPHA = 0.001  # the permutation p-value below which served and training texts differ
AUC_DRIFT = 0.70  # ... and the domain classifier's AUC from which the difference is large enough to act on
PERMUTATIONS = 1999  # the smallest p-value possible is 1 / (1 + PERMUTATIONS) = 0.0005
WINDOW_TEXTS = 200  # the most recent stored texts the embedding test reads
REFERENCE_TEXTS = 500  # training texts it reads
MIN_TEXTS = 30  # fewer served texts than this: no test
LANGUAGE_DISTANCE = 0.2  # a script mix this far from training's is drift
LENGTH_KS = 0.2  # a length distribution this far (KS statistic, p < ALPHA too) is drift
NOVEL_EXAMPLES = 5

Embed = Callable[[list[str]], np.ndarray]


def mmd_permutation_test(x: np.ndarray, y: np.ndarray, permutations: int = PERMUTATIONS,
                         seed: int = 0) -> tuple[float, float]:
    """``(MMD², p-value)`` of samples ``x`` (n, d) and ``y`` (m, d) under an RBF kernel whose bandwidth is
    the median pairwise distance. All relabellings are scored at once: with ``w`` the +1/n, -1/m weight
    vector, MMD² = wᵀKw, so the permuted statistics are the column sums of ``W * (K @ W)``."""
    z = np.concatenate([x, y]).astype(np.float64)
    squared = (z * z).sum(axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * z @ z.T, 0.0)
    median = np.median(distances[np.triu_indices(len(z), k=1)])
    kernel = np.exp(-distances / (median if median > 0 else 1.0))
    weights = np.concatenate([np.full(len(x), 1 / len(x)), np.full(len(y), -1 / len(y))])
    observed = float(weights @ kernel @ weights)
    rng = np.random.default_rng(seed)
    shuffled = weights[rng.permuted(np.tile(np.arange(len(z)), (permutations, 1)), axis=1)].T  # (N, P)
    null = (shuffled * (kernel @ shuffled)).sum(axis=0)
    p_value = (1 + int((null >= observed - 1e-12).sum())) / (1 + permutations)
    return observed, p_value


def domain_classifier(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, np.ndarray]:
    """``(ROC AUC, each x row's out-of-fold probability of being served)`` of a logistic regression telling
    ``x`` (served) from ``y`` (training), by 5-fold cross-validation with balanced class weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    z = np.concatenate([x, y])
    target = np.concatenate([np.ones(len(x)), np.zeros(len(y))])
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, z, target, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(target, scores)), scores[:len(x)]


def embedding_drift(served: Sequence[str], reference: Sequence[str], embed: Embed, seed: int = 0) -> dict:
    """The embedding test (see the module docstring) on ``served`` against ``reference`` texts; each served
    text's novelty (the domain classifier's probability) under ``"novelty"``."""
    if len(served) < MIN_TEXTS:
        return {"texts": len(served), "skipped": f"{len(served)} stored texts in the window; the embedding test "
                                                  f"needs {MIN_TEXTS} (send \"store\": true or turn on "
                                                  "store_inputs in the model's monitoring settings)"}
    if len(reference) < MIN_TEXTS:
        return {"texts": len(served), "skipped": f"the version's fingerprint has {len(reference)} training texts"}
    x, y = embed(list(served)), embed(list(reference))
    mmd, p_value = mmd_permutation_test(x, y, seed=seed)
    auc, novelty = domain_classifier(x, y, seed=seed)
    return {"texts": len(served), "reference_texts": len(reference), "mmd": round(mmd, 6),
            "p_value": round(p_value, 6), "permutations": PERMUTATIONS, "domain_auc": round(auc, 4),
            "drifted": bool(p_value < ALPHA and auc >= AUC_DRIFT), "novelty": novelty}


def length_drift(chars: Sequence[int], training_chars: Sequence[int]) -> dict:
    """Served lengths against training lengths (two-sample Kolmogorov-Smirnov)."""
    if len(chars) < MIN_TEXTS or not training_chars:
        return {"texts": len(chars), "mean_chars": _mean(chars), "training_mean_chars": _mean(training_chars),
                "ks": None, "p_value": None, "drifted": False}
    from scipy.stats import ks_2samp

    result = ks_2samp(chars, training_chars)
    return {"texts": len(chars), "mean_chars": _mean(chars), "training_mean_chars": _mean(training_chars),
            "ks": round(float(result.statistic), 4), "p_value": float(f"{result.pvalue:.3g}"),
            "drifted": bool(result.pvalue < ALPHA and result.statistic >= LENGTH_KS)}


def language_drift(scripts: Sequence[str | None], training: dict[str, float]) -> dict:
    """The served main-script mix against training's (total variation distance)."""
    served = script_shares(scripts)
    distance = None
    if served and training:
        keys = set(served) | set(training)
        distance = round(0.5 * sum(abs(served.get(k, 0) - training.get(k, 0)) for k in keys), 4)
    drifted = bool(distance is not None and len(scripts) >= MIN_TEXTS and distance >= LANGUAGE_DISTANCE)
    return {"served": served, "training": training, "distance": distance, "drifted": drifted}


def unknown_token_drift(unknown: int, tokens: int, texts: int, training_rate: float | None) -> dict:
    """The served unknown-token rate beside training's; drift when at least 1 point above it and double it."""
    rate = round(unknown / tokens, 6) if tokens else None
    drifted = bool(rate is not None and training_rate is not None and texts >= MIN_TEXTS
                   and rate >= training_rate + 0.01 and rate >= 2 * training_rate)
    return {"rate": rate, "training_rate": training_rate, "drifted": drifted}


def input_features(records: Sequence) -> dict:
    """The cheap drift signals of some answers (a report's time bucket), from the features every answer records:
    their texts' mean length in characters and their unknown-token rate (None where no answer has features)."""
    featured = [r for r in records if r.features]
    tokens = sum(r.prompt_tokens for r in featured)
    return {"chars_mean": _mean([r.features["chars"] for r in featured]),
            "unknown_token_rate": round(sum(r.features.get("unknown_tokens", 0) for r in featured) / tokens, 6)
            if tokens else None}


def drift_section(records: Sequence, fingerprint: dict | None, embed: Embed | None) -> dict:
    """The report's ``"drift"`` section for a window's ``records`` (oldest first) of a version whose training
    ``fingerprint`` is given (None: a version trained before fingerprints were kept); ``embed`` turns texts
    into the version's embeddings (None: skip the embedding test)."""
    if fingerprint is None:
        return {"verdict": "insufficient_data", "reasons": [
            "this version has no training fingerprint (trained before Tailor kept one); retrain it to monitor drift"]}
    featured = [r for r in records if r.features]
    stored = [r for r in records if r.input and isinstance(r.input.get("text"), str)][-WINDOW_TEXTS:]
    reference = fingerprint["texts"][:REFERENCE_TEXTS]
    if embed is None:
        embedding = {"texts": len(stored), "skipped": "no encoder for this version"}
    else:
        embedding = embedding_drift([r.input["text"] for r in stored], reference, embed)
    novelty = embedding.pop("novelty", None)
    section = {
        "embedding": embedding,
        "length": length_drift([r.features["chars"] for r in featured], fingerprint["chars"]),
        "language": language_drift([r.features.get("script") for r in featured], fingerprint["scripts"]),
        "unknown_tokens": unknown_token_drift(sum(r.features.get("unknown_tokens", 0) for r in featured),
                                              sum(r.prompt_tokens for r in featured), len(featured),
                                              fingerprint.get("unknown_token_rate")),
        "novel_examples": [] if novelty is None else [
            {"prediction_id": stored[i].id, "text": stored[i].input["text"], "novelty": round(float(novelty[i]), 4)}
            for i in np.argsort(-novelty, kind="stable")[:NOVEL_EXAMPLES]],
    }
    return {**_verdict(section, len(featured)), **section}


def _verdict(section: dict, texts: int) -> dict:
    reasons = []
    embedding = section["embedding"]
    if embedding.get("drifted"):
        reasons.append(f"embeddings: served texts told apart from training texts with AUC "
                       f"{embedding['domain_auc']:.2f} (MMD p = {embedding['p_value']:.4f})")
    if section["length"]["drifted"]:
        length = section["length"]
        reasons.append(f"length: mean {length['mean_chars']:.0f} characters against "
                       f"{length['training_mean_chars']:.0f} in training (KS {length['ks']:.2f})")
    if section["language"]["drifted"]:
        reasons.append(f"language: script mix {section['language']['served']} against "
                       f"{section['language']['training']} in training")
    if section["unknown_tokens"]["drifted"]:
        unknown = section["unknown_tokens"]
        reasons.append(f"unknown tokens: {100 * unknown['rate']:.1f}% of tokens against "
                       f"{100 * (unknown['training_rate'] or 0):.1f}% in training")
    if reasons:
        return {"verdict": "drift", "reasons": reasons}
    if texts < MIN_TEXTS and "skipped" in embedding:
        return {"verdict": "insufficient_data", "reasons": [f"{texts} answers in the window; drift needs {MIN_TEXTS}"]}
    return {"verdict": "no_drift", "reasons": []}


class EmbeddingCache:
    """Embeddings of texts already seen, per version (the training sample is embedded once, a window's texts
    once each): at most ``max_texts`` vectors, least recently used dropped first. Thread-safe."""

    def __init__(self, max_texts: int = 20_000):
        self.max_texts = max_texts
        self._vectors: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embedder(self, key: tuple, embed: Embed) -> Embed:
        """``embed`` for the version ``key``, answering from the cache where it can."""

        def cached(texts: list[str]) -> np.ndarray:
            with self._lock:
                missing = list(dict.fromkeys(t for t in texts if (key, t) not in self._vectors))
            if missing:
                vectors = embed(missing)
                with self._lock:
                    for text, vector in zip(missing, vectors):
                        self._vectors[(key, text)] = vector
                    while len(self._vectors) > self.max_texts:
                        self._vectors.popitem(last=False)
            with self._lock:
                out = []
                for text in texts:
                    vector = self._vectors.get((key, text))
                    if vector is None:  # dropped by a concurrent call: embed it again
                        vector = embed([text])[0]
                    else:
                        self._vectors.move_to_end((key, text))
                    out.append(vector)
            return np.stack(out)

        return cached


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 2) if len(values) else None
