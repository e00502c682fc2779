"""Explanations: what occlusion costs against a prediction, and how faithful it is, beside Captum.

For each dataset (English finance tweets, Chinese THUCNews titles) the script fine-tunes a small head-only
version with Tailor (a seeded subsample of the training file), then prints:

- cost: the median latency of predicting and of explaining (``tailor.models.explain``) one text of about 30
  tokens (the test texts nearest 30 tokens) at batch 1, on onnx-int8 (what the gate serves) and torch-fp32,
  and their ratio (target: at most 20x);
- faithfulness: ERASER comprehensiveness (``tailor.eval.faithfulness``): the drop of the predicted label's
  probability with the 3 most important words removed, against 3 random words (5 seeded draws), and the
  ratio, on test texts;
- the peer the issue names, Captum's LayerIntegratedGradients on the PyTorch model (word embeddings, padding
  baseline, 50 steps in one batch; token attributions summed per word): its latency per text and the same
  faithfulness measure. Without captum installed (``pip install -e .[bench]``) those columns say so.

The machine is shared: the figures are indicative. The summary goes to ``bench/results/explain.json``.

Usage::

    .venv/bin/python bench/explain.py [--datasets tweets thucnews] [--max-train 300] [--texts 30] [--latency-texts 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from classify_vs_trainer import REPO_ROOT, write_summary, write_training_subsample

RESULTS_PATH = REPO_ROOT / "bench" / "results" / "explain.json"
DATASETS = {  # name: (folder, train file, test file)
    "tweets": ("twitter_financial_news_sentiment", "train_small.csv", "test.csv"),
    "thucnews": ("thucnews_titles", "dev_small.csv", "test_small.csv"),
}
TARGET_TOKENS = 30
MAX_RATIO = 20.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--max-train", type=int, default=300, help="stratified, seeded cap on training rows")
    parser.add_argument("--texts", type=int, default=30, help="test texts for the faithfulness measure")
    parser.add_argument("--latency-texts", type=int, default=5, help="~30-token texts timed at batch 1")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per text (the median is kept)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("TAILOR_DATASETS", REPO_ROOT.parent / "shared" / "datasets")))
    return parser.parse_args(argv)


def median_seconds(run, repeats: int) -> float:
    run()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def texts_near(classifier, texts: list[str], n: int, tokens: int = TARGET_TOKENS) -> list[str]:
    """The ``n`` texts whose token count is nearest ``tokens``."""
    lengths = [len(ids) for ids in classifier.encode(texts).input_ids]
    order = sorted(range(len(texts)), key=lambda i: abs(lengths[i] - tokens))
    return [texts[i] for i in order[:n]]


def cost(classifier, texts: list[str], repeats: int, explain_one) -> dict:
    """Median predict and explain latency over ``texts`` at batch 1, and their ratio."""
    predict = statistics.median(median_seconds(lambda t=t: classifier.predict_proba([t]), repeats) for t in texts)
    explain = statistics.median(median_seconds(lambda t=t: explain_one(t), repeats) for t in texts)
    return {"predict_ms": round(predict * 1000, 1), "explain_ms": round(explain * 1000, 1),
            "ratio": round(explain / predict, 1)}


class CaptumExplainer:
    """LayerIntegratedGradients over the word embeddings of a PyTorch classifier, summed per word unit."""

    def __init__(self, classifier, steps: int = 50):
        import torch
        from captum.attr import LayerIntegratedGradients

        self.torch, self.classifier, self.steps = torch, classifier, steps
        self.model = classifier.model.eval()
        encoder = getattr(self.model, "encoder", None) or self.model.base_model

        def forward(input_ids, attention_mask):
            return torch.softmax(self.model(input_ids=input_ids, attention_mask=attention_mask), dim=-1)

        self.lig = LayerIntegratedGradients(forward, encoder.embeddings.word_embeddings)

    def explain(self, text: str):
        from tailor.models.explain import Explanation, split_units

        tokenizer = self.classifier.tokenizer
        enc = tokenizer([text], truncation=True, max_length=self.classifier.spec.max_length,
                        return_offsets_mapping=True, return_tensors="pt", return_special_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        baseline = ids.masked_fill(enc["special_tokens_mask"] == 0, tokenizer.pad_token_id)
        with self.torch.no_grad():
            probs = self.torch.softmax(self.model(input_ids=ids, attention_mask=mask), dim=-1)[0].numpy()
        label = int(probs.argmax())
        attributions = self.lig.attribute(ids, baselines=baseline, additional_forward_args=(mask,), target=label,
                                          n_steps=self.steps, internal_batch_size=self.steps)
        per_token = attributions.sum(-1)[0].detach().numpy()
        offsets = enc["offset_mapping"][0].tolist()
        tokens = []
        for unit in split_units(text):
            score = sum(a for a, (s, e) in zip(per_token, offsets) if e > s and s < unit.end and e > unit.start)
            tokens.append({"token": unit.token, "start": unit.start, "end": unit.end, "weight": float(score)})
        return Explanation(self.classifier.labels[label], probs, tokens)


def faithfulness(classifier, texts: list[str], explanations) -> dict:
    from tailor.eval.faithfulness import comprehensiveness

    return comprehensiveness(classifier.predict_proba, classifier.labels, texts, explanations, k=3, draws=5, seed=0)


def bench_dataset(name: str, args, home: Path) -> dict:
    import tailor
    from tailor.data.ingest import read_dataset
    from tailor.models.classifier import TextClassifier
    from tailor.models.explain import explain_texts
    from tailor.models.runtimes import default_bases
    from tailor.registry.service import open_registry
    from tailor.settings import Settings

    folder, train_file, test_file = DATASETS[name]
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'tailor.db'}")
    train = write_training_subsample(args.data_dir / folder / train_file, args.max_train, home / f"{name}-train.csv")
    test = read_dataset(args.data_dir / folder / test_file)
    started = time.perf_counter()
    result = tailor.fine_tune(train, name=name, method="head", seed=0, settings=settings)
    print(f"\n{name}: trained {result.version.ref} on {result.version.base_model} in "
          f"{time.perf_counter() - started:.0f}s (test macro-F1 {result.metrics['macro_f1']:.3f}, the job's "
          f"explanations took {result.version.lineage['timings']['explain_s']:.1f}s)")
    directory = open_registry(settings).artifact_dir(result.version)
    rng = np.random.default_rng(0)
    sample = [test.texts[i] for i in sorted(rng.choice(len(test), size=min(args.texts, len(test)), replace=False))]
    out = {"base_model": result.version.base_model, "macro_f1": result.metrics["macro_f1"], "runtimes": {}}
    for runtime in ("onnx-int8", "torch-fp32"):
        classifier = TextClassifier.from_dir(directory, runtime=runtime, bases=default_bases(home))
        near = texts_near(classifier, list(test.texts), args.latency_texts)
        explain_one = lambda t, c=classifier: explain_texts(c.predict_proba, c.labels, [t])  # noqa: E731
        row = cost(classifier, near, args.repeats, explain_one)
        row["faithfulness"] = faithfulness(classifier, sample, explain_texts(classifier.predict_proba,
                                                                             classifier.labels, sample))
        out["runtimes"][runtime] = row
        print(f"  occlusion on {runtime:<10} predict {row['predict_ms']:7.1f} ms  explain {row['explain_ms']:7.1f} ms "
              f"= {row['ratio']:5.1f}x   comprehensiveness top-3 {row['faithfulness']['comprehensiveness']:.3f} "
              f"vs random {row['faithfulness']['random']:.3f} = {row['faithfulness']['ratio']:.1f}x")
    out["captum"] = captum_row(TextClassifier.from_dir(directory), list(test.texts), sample, args)
    return out


def captum_row(classifier, texts: list[str], sample: list[str], args) -> dict | None:
    try:
        explainer = CaptumExplainer(classifier)
    except ImportError:
        print("  captum LIG: not installed (pip install -e '.[bench]'); the peer's figures are left out")
        return None
    near = texts_near(classifier, texts, args.latency_texts)
    row = cost(classifier, near, args.repeats, explainer.explain)
    row["faithfulness"] = faithfulness(classifier, sample, [explainer.explain(t) for t in sample])
    print(f"  captum LIG on torch      predict {row['predict_ms']:7.1f} ms  explain {row['explain_ms']:7.1f} ms "
          f"= {row['ratio']:5.1f}x   comprehensiveness top-3 {row['faithfulness']['comprehensiveness']:.3f} "
          f"vs random {row['faithfulness']['random']:.3f} = {row['faithfulness']['ratio']:.1f}x")
    return row


def main(argv=None) -> dict:
    args = parse_args(argv)
    summary = {"target_ratio": MAX_RATIO, "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="tailor-bench-explain-") as tmp:
        home = Path(tmp)
        converted = Path.home() / ".tailor" / "models"
        if converted.is_dir():  # reuse a converted me5-small (a sealed, checksummed cache) instead of converting
            (home / "models").symlink_to(converted)
        os.environ["TAILOR_HOME"] = str(home)
        for name in args.datasets:
            summary["datasets"][name] = bench_dataset(name, args, home)
    print("\nindicative figures: the machine's cores are shared with other work")
    return write_summary(summary, RESULTS_PATH)


if __name__ == "__main__":
    main()
