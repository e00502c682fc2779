"""Zero labels: a classifier from label names alone, by embedding similarity.

Each label becomes a prompt (``card_arrival`` → ``card arrival``, or ``card arrival: my new card has not come``
with a one-line description). The prompts are embedded exactly as texts are (the frozen base encoder, mean
pooling, L2 normalisation: the model's own ``embed``), and each becomes one row of the linear head of an
ordinary method-``head`` model, times :data:`ZERO_SHOT_SCALE`, bias 0. A text's logit for a label is then the
scaled cosine similarity of the two embeddings, and its answer the nearest label.

So a zero-shot version is a ``head`` version like any other: served, exported, explained and retrained from
(``tailor retrain`` continues from its rows) without a line of special code; ``lineage["zero_shot"]`` records
its prompts and scale. Its uses: a first model before any label exists, pre-labelling texts for review
(``tailor predict NAME --file texts.txt --json``), and the zero-shot baseline beside the majority baseline in
every evaluation (:func:`tailor.eval.run.zero_shot_baseline`). The job that registers a zero-shot
version is :func:`tailor.train.zero_shot.run_zero_shot_job`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from tailor.catalog import ResolvedBase
from tailor.errors import UsageError

# Logits are ZERO_SHOT_SCALE × cosine similarity. Measured with minilm-l6 on 7 test sets (scales 5 to 100):
# mean expected calibration error 0.196 at 10, 0.156 at 15, 0.172 at 20, and mean log loss 1.347, 1.301,
# 1.389; at 15 the mean top probability ranges from 0.50 (clinc150, 150 labels) to 0.73 (sms_spam, 2), neither
# flat nor all ~1.0. Per set at 15 (ECE, macro-F1 vs the majority baseline's): finance_sentiment_test 0.346,
# 0.251 vs 0.095 (label names; 0.200, 0.369 with one-line descriptions); bank_intents_test 0.140, 0.808 vs
# 0.004; banking77 (1000 test rows) 0.066, 0.619 vs 0.000; medical_abstracts 0.123, 0.547 vs 0.099; sms_spam
# 0.125, 0.537 vs 0.464; clinc150 (1000 test rows) 0.093, 0.604 vs 0.000. Few labels would prefer ~10, many
# ~20; 15 is the best single compromise.
ZERO_SHOT_SCALE = 15.0
ZERO_SHOT_LABEL = "zero-shot"


def _words(text: str) -> str:
    return " ".join(text.split())


def label_prompts(labels: Sequence[str], descriptions: dict[str, str] | None = None) -> list[str]:
    """The text each label is embedded as: its name with ``_`` and ``-`` as spaces, then ``: <description>``
    when it has one (whitespace collapsed; an empty description counts as none).

    Args:
        labels: the labels, in the order of the prompts returned.
        descriptions: a one-line description per label, for some or all of them.

    Returns:
        One prompt per label: ``card_arrival`` → ``card arrival``; with a description, ``card arrival: <it>``.

    Raises:
        UsageError: fewer than 2 labels, a label given twice, a label with no words, two labels with the same
            prompt, or a description for a label that is not among ``labels``.
    """
    labels = list(labels)
    if len(labels) < 2:
        got = f"1: {labels[0]!r}" if labels else "none"
        raise UsageError(f"give at least 2 labels to choose between (got {got})")
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise UsageError(f"label {label!r} is given twice")
        seen.add(label)
    unknown = [label for label in (descriptions or {}) if label not in seen]
    if unknown:
        raise UsageError(f"a description is given for {unknown[0]!r}, which is not one of the labels "
                         f"({', '.join(labels)})")
    prompts, owner = [], {}
    for label in labels:
        name = _words(re.sub(r"[_-]+", " ", label))
        if not name:
            raise UsageError(f"label {label!r} has no words to compare texts with: name it in words")
        description = _words((descriptions or {}).get(label) or "")
        prompt = f"{name}: {description}" if description else name
        if prompt in owner:
            raise UsageError(f"labels {owner[prompt]!r} and {label!r} read the same ({prompt!r}): rename one, or "
                             "describe them")
        owner[prompt] = label
        prompts.append(prompt)
    return prompts


@dataclass
class ZeroShotModel:
    """A zero-shot classifier in memory.

    Attributes:
        classifier: a :class:`~tailor.models.classifier.TextClassifier` over a method-``head`` model whose
            head rows are the prompts' embeddings times ``scale``.
        prompts: one per label, in the labels' order.
        scale: the logit scale (:data:`ZERO_SHOT_SCALE`).
    """

    classifier: object
    prompts: list[str]
    scale: float


def build_zero_shot_model(base: ResolvedBase, labels: Sequence[str], descriptions: dict[str, str] | None = None,
                          *, device: str = "cpu", scale: float = ZERO_SHOT_SCALE) -> ZeroShotModel:
    """The zero-shot classifier over ``base`` for ``labels`` (see the module docstring).

    The prompts go through the classifier's own encoding and the model's ``embed`` (as texts do), so a
    text identical to a prompt scores a cosine similarity of 1 with it.

    Raises:
        UsageError: bad labels or descriptions (see :func:`label_prompts`).
    """
    prompts = label_prompts(labels, descriptions)
    from tailor.runtime import setup_torch

    setup_torch()
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tailor.models.classifier import ClassifierSpec, TextClassifier, build_pooled_head_model, embed_all

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = build_pooled_head_model(AutoModel.from_pretrained(base.path), len(labels))
    spec = ClassifierSpec("head", base.name, list(labels), base.max_length, base.pooling)
    classifier = TextClassifier(model, tokenizer, spec, device)
    vectors = embed_all(model, classifier.encode(prompts), tokenizer.pad_token_id, classifier.device)
    with torch.no_grad():
        rows = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=-1) * scale
        model.classifier.weight.copy_(rows.to(model.classifier.weight.device))
        model.classifier.bias.zero_()
    return ZeroShotModel(classifier, prompts, scale)
