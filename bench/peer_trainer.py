"""The benchmark's peer: Hugging Face ``Trainer`` with AutoTrain's text-classification defaults.

AutoTrain (``autotrain.trainers.text_classification``) fine-tunes the whole encoder with these defaults,
which :data:`PEER_SETTINGS` copies: texts tokenized to 128 tokens with ``padding="max_length"``, batch
size 8, learning rate 5e-5, 3 epochs, AdamW without weight decay, a linear schedule with 10% warm-up,
gradient clipping at 1.0, seed 42, fp32, evaluation batch 16. Two changes are generous to the peer:
AutoTrain evaluates and saves a checkpoint every epoch and saves the final model; here it does neither.
"""

from __future__ import annotations

import csv
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tailor.eval.metrics import classification_metrics

PEER_SETTINGS = {
    "max_length": 128,
    "padding": "max_length",
    "batch_size": 8,
    "learning_rate": 5e-5,
    "epochs": 3,
    "warmup_fraction": 0.1,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "seed": 42,
}


@dataclass(frozen=True)
class PeerResult:
    """What one peer run measured.

    Attributes:
        wall_s: seconds from reading the files to the last test prediction (load + train + predict).
        train_rows / test_rows: rows read from each file.
        metrics: :func:`tailor.eval.metrics.classification_metrics` on the test file.
    """

    wall_s: float
    train_rows: int
    test_rows: int
    metrics: dict


def read_texts_labels(path: str | Path) -> tuple[list[str], list[str]]:
    """Read the ``text`` and ``label`` columns of a UTF-8 CSV file."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["label"] for row in rows]


class EncodedTexts(torch.utils.data.Dataset):
    """Texts tokenized once, padded to ``max_length``, with optional label ids (as AutoTrain feeds them)."""

    def __init__(self, tokenizer, texts: list[str], label_ids: list[int] | None = None):
        self.encodings = tokenizer(texts, truncation=True, padding=PEER_SETTINGS["padding"],
                                   max_length=PEER_SETTINGS["max_length"], return_tensors="pt")
        self.label_ids = label_ids

    def __len__(self) -> int:
        return self.encodings["input_ids"].shape[0]

    def __getitem__(self, index: int) -> dict:
        item = {key: value[index] for key, value in self.encodings.items()}
        if self.label_ids is not None:
            item["labels"] = torch.tensor(self.label_ids[index])
        return item


def warmup_steps(train_rows: int) -> int:
    """AutoTrain's ``warmup_ratio=0.1`` as a step count: ``ceil(0.1 * total optimizer steps)``."""
    total_steps = math.ceil(train_rows / PEER_SETTINGS["batch_size"]) * PEER_SETTINGS["epochs"]
    return math.ceil(PEER_SETTINGS["warmup_fraction"] * total_steps)


def training_arguments(output_dir: str, train_rows: int):
    """``TrainingArguments`` with AutoTrain's defaults, no per-epoch evaluation or checkpoints."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=PEER_SETTINGS["batch_size"],
        per_device_eval_batch_size=2 * PEER_SETTINGS["batch_size"],
        learning_rate=PEER_SETTINGS["learning_rate"],
        num_train_epochs=PEER_SETTINGS["epochs"],
        lr_scheduler_type="linear",
        warmup_steps=warmup_steps(train_rows),
        optim="adamw_torch",
        weight_decay=PEER_SETTINGS["weight_decay"],
        max_grad_norm=PEER_SETTINGS["max_grad_norm"],
        seed=PEER_SETTINGS["seed"],
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def train_and_evaluate(train_path: str | Path, test_path: str | Path, model_dir: str | Path) -> PeerResult:
    """Fine-tune ``model_dir`` on the training file with ``Trainer`` and score it on the test file.

    Labels are the sorted distinct training labels.

    Args:
        train_path: CSV with ``text,label`` to train on.
        test_path: CSV with ``text,label`` to evaluate on.
        model_dir: a local Hugging Face model directory (weights, config, tokenizer).

    Returns:
        The run's :class:`PeerResult`.

    Raises:
        ValueError: the test file has a label the training file lacks.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, set_seed

    start = time.perf_counter()
    train_texts, train_labels = read_texts_labels(train_path)
    test_texts, test_labels = read_texts_labels(test_path)
    labels = sorted(set(train_labels))
    label2id = {label: i for i, label in enumerate(labels)}
    set_seed(PEER_SETTINGS["seed"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = Trainer(
            model=model,
            args=training_arguments(output_dir, len(train_texts)),
            train_dataset=EncodedTexts(tokenizer, train_texts, [label2id[label] for label in train_labels]),
            processing_class=tokenizer,
        )
        trainer.train()
        logits = trainer.predict(EncodedTexts(tokenizer, test_texts)).predictions
    proba = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=-1).numpy()
    predicted = [labels[i] for i in proba.argmax(axis=1)]
    metrics = classification_metrics(test_labels, predicted, labels, proba)
    return PeerResult(time.perf_counter() - start, len(train_texts), len(test_texts), metrics)
