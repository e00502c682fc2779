"""Model cards: Hugging Face's metadata with exact keys and values, read back by huggingface_hub's own parser;
the sections a version's record fills (slices, explanations) and the words when it holds none; a chat
version's card; the card as README.md in hf and peft exports; ``tailor models show --card``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from api_helpers import SMALL_CSV, publish_copy
from tailor.models.card import card_metadata, model_card, version_card
from tailor.registry.service import open_registry

SECTIONS = ["Model details", "Intended use", "Training data", "Evaluation", "Evaluation on slices", "Calibration",
            "Explanation examples", "Limitations", "How to use"]
FAIRNESS = {  # the bias part's contract (metrics["fairness"])
    "data": "ab" * 32, "created_at": "2026-11-30T12:00:00Z", "slice_column": "region", "metric": "accuracy",
    "largest_gap": 0.25, "equal_opportunity": None,
    "slices": [{"column": "region", "value": "north", "n": 40, "accuracy": 0.85, "accuracy_ci": [0.71, 0.93],
                "macro_f1": 0.84, "positive_rate": 0.3, "gap": 0.0, "too_small": False},
               {"column": "region", "value": "south|<i>east</i>", "n": 8, "accuracy": 0.6, "accuracy_ci": [0.31, 0.83],
                "macro_f1": 0.55, "positive_rate": 0.5, "gap": 0.25, "too_small": True}],
    "worst_slices": [{"column": "length", "value": "over 60 tokens", "n": 12, "accuracy": 0.5,
                      "accuracy_ci": [0.25, 0.75], "macro_f1": 0.48, "positive_rate": 0.4, "gap": 0.35,
                      "too_small": False}],
    "counterfactual": {"checked": 50, "flipped": 3, "flip_rate": 0.06, "examples": []},
}
EXPLANATIONS = {  # the explanations part's contract (metrics["explanations"])
    "method": "occlusion", "unit": "word",
    "faithfulness": {"k": 3, "texts": 40, "comprehensiveness": 0.312, "random": 0.041, "ratio": 7.61},
    "top_words": {"bearish": [{"word": "falls", "weight": 0.42, "count": 7}, {"word": "miss", "weight": 0.3,
                                                                                "count": 4}],
                  "bullish": [{"word": "upgrade", "weight": 0.51, "count": 5}]},
    "mistakes": [{"line": 12, "text": "Shares *soar* <script>x</script> after miss", "label": "bullish",
                  "predicted": "bearish", "confidence": 0.93,
                  "explanation": [{"token": "Shares", "start": 0, "end": 6, "weight": 0.01},
                                  {"token": "miss", "start": 38, "end": 42, "weight": 0.61}]}],
}


@pytest.fixture
def settings(fresh_home):
    from tailor.settings import Settings

    return Settings(home=fresh_home)


@pytest.fixture
def tweets(settings, head_artifact):
    """acme's head-only classifier ``tweets``, version 1: a copy of the session's trained version without the
    bias and explanation records (each test sets those it needs)."""
    source, trained = head_artifact
    bare = dataclasses.replace(trained, metrics={k: v for k, v in trained.metrics.items()
                                                 if k not in ("fairness", "explanations")})
    return publish_copy(settings, (source, bare), "acme", "tweets")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def headings(card: str) -> list[str]:
    return re.findall(r"^## (.+)$", card, flags=re.M)


def section(card: str, heading: str) -> str:
    return card.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0].strip()


def test_a_trained_versions_front_matter_has_hugging_faces_keys_and_its_record_values(tweets):
    card = model_card(tweets)
    meta = front_matter(card)
    test = tweets.metrics["test"]
    sha = hashlib.sha256(SMALL_CSV).hexdigest()
    assert list(meta) == ["base_model", "license", "language", "library_name", "pipeline_tag", "tags", "datasets",
                          "model-index"]
    assert meta == {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2", "license": "apache-2.0", "language": ["en"],
        "library_name": "transformers", "pipeline_tag": "text-classification",
        "tags": ["tailor", "text-classification", "frozen-encoder"], "datasets": [f"sha256:{sha}"],
        "model-index": [{"name": "tweets:1", "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": {"name": f"held-out split of training file {sha[:12]}", "type": f"sha256:{sha}",
                        "split": "test"},
            "metrics": [{"type": "accuracy", "value": round(test["accuracy"], 4), "name": "Accuracy"},
                        {"type": "f1", "value": round(test["macro_f1"], 4), "name": "Macro F1",
                         "args": {"average": "macro"}},
                        {"type": "f1", "value": round(test["weighted_f1"], 4), "name": "Weighted F1",
                         "args": {"average": "weighted"}}]}]}]}
    assert meta == card_metadata(tweets)
    assert headings(card) == SECTIONS
    assert card.splitlines()[len(yaml.safe_dump(meta, sort_keys=False, width=1000).splitlines()) + 3] == "# tweets:1"


def test_huggingface_hubs_parser_reads_the_card_and_its_eval_results_round_trip(tweets, tmp_path):
    from huggingface_hub import metadata_load

    text = model_card(tweets)
    card = ModelCard(text)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    assert card.data.model_name == "tweets:1"
    test = tweets.metrics["test"]
    assert [(r.task_type, r.dataset_split, r.metric_type, r.metric_name, r.metric_value, r.metric_args)
            for r in card.data.eval_results] == [
        ("text-classification", "test", "accuracy", "Accuracy", round(test["accuracy"], 4), None),
        ("text-classification", "test", "f1", "Macro F1", round(test["macro_f1"], 4), {"average": "macro"}),
        ("text-classification", "test", "f1", "Weighted F1", round(test["weighted_f1"], 4), {"average": "weighted"})]
    assert card.data.to_dict()["model-index"] == front_matter(text)["model-index"]  # parsed and written back alike
    name, results = model_index_to_eval_results(front_matter(text)["model-index"])
    assert (name, results) == ("tweets:1", card.data.eval_results)
    (tmp_path / "README.md").write_text(text, encoding="utf-8")
    assert metadata_load(tmp_path / "README.md") == front_matter(text)
    assert ModelCard.load(tmp_path / "README.md").text == card.text


def test_the_card_states_the_training_data_and_evaluation_from_the_record(tweets):
    card = model_card(tweets)
    report = tweets.lineage["data_report"]
    sha = hashlib.sha256(SMALL_CSV).hexdigest()
    details = section(card, "Model details")
    assert "| Tenant | acme |" in details and "| Registered by | not recorded |" in details
    assert f"| Registered | {tweets.created_at.isoformat(timespec='seconds')} |" in details
    data = section(card, "Training data")
    assert data.splitlines()[:3] == [
        f"- Training file: sha256 `{sha}`, csv, {report['rows']['read']} rows read",
        "- Test set: held out from the training file (no separate test file)",
        "- Split: {train} training, {valid} validation, {test} test rows".format(**tweets.lineage["rows"])]
    for label, n in tweets.lineage["label_counts"].items():
        assert f"| {label} | {n} | {report['labels']['counts'][label]} |" in data
    assert f"Cleaning: {report['rows']['read']} rows read, {report['rows']['kept']} kept; removed: none." in data
    assert "(0 rows with any)" in data
    evaluation = section(card, "Evaluation")
    test, baseline = tweets.metrics["test"], tweets.metrics["baseline"]
    zero_shot = baseline["zero_shot"]
    assert "| metric | this version | majority baseline | zero-shot baseline |" in evaluation
    assert (f"| accuracy | {test['accuracy']:.4f} | {baseline['accuracy']:.4f} | {zero_shot['accuracy']:.4f} |"
            in evaluation)
    assert (f"| macro-F1 | {test['macro_f1']:.4f} | {baseline['macro_f1']:.4f} | {zero_shot['macro_f1']:.4f} |"
            in evaluation)
    assert f"On the held-out test split ({test['n']} rows)" in evaluation


def test_the_card_names_labels_from_no_labelled_row(settings, tweets):
    pool = {"path": "pool.txt", "sha256": "ab12", "text_col": None, "rows": 500, "used": 480,
            "left_out": {"training rows": 20}}
    trained = dataclasses.replace(tweets, lineage={**tweets.lineage, "self_training": {
        "pool": pool, "rounds": [], "pseudo_labels_used": 96, "valid_macro_f1_without": 0.5,
        "valid_macro_f1_with": 0.625}})
    assert ("- Self-training: 96 pseudo-labels from 480 unlabelled texts (SHA-256 `ab12`); validation macro-F1 "
            "0.5000 without, 0.6250 with") in section(model_card(trained), "Training data")
    skipped = dataclasses.replace(tweets, lineage={**tweets.lineage, "self_training": {
        "pool": pool, "skipped": "it is the training file itself (same bytes)"}})
    assert ("- Unlabelled file pool.txt: not used (it is the training file itself (same bytes))"
            in section(model_card(skipped), "Training data"))
    zero_shot = dataclasses.replace(tweets, lineage={**tweets.lineage, "zero_shot": {
        "prompts": ["bearish", "bullish: prices up"], "scale": 15.0}})
    assert ("- Zero-shot: no labelled row; each label is the embedding of its prompt (“bearish”; “bullish: prices "
            "up”), scaled by 15.00") in section(model_card(zero_shot), "Training data")


def test_slices_and_explanations_appear_once_recorded_and_say_so_while_not(settings, tweets):
    card = model_card(tweets)
    assert section(card, "Evaluation on slices") == (
        "Not evaluated on slices: no bias report was recorded for this version. `tailor eval MODEL FILE "
        "--slice-col COLUMN` scores every slice of a column and records it here.")
    assert section(card, "Explanation examples").startswith("No explanations were recorded for this version")
    assert "- Not evaluated on slices: differences between groups of people are unknown." in card

    store = open_registry(settings).store
    updated = store.update_metrics("acme", "tweets", 1, {"fairness": FAIRNESS, "explanations": EXPLANATIONS})
    card = model_card(updated)
    assert headings(card) == SECTIONS
    slices = section(card, "Evaluation on slices")
    assert slices.splitlines()[0] == (f"On file sha256 `{'ab' * 32}` (2026-11-30T12:00:00Z), sliced by column region. "
                                      "Largest accuracy gap to the best slice: 0.2500.")
    assert "| region | north | 40 | 0.8500 (0.710–0.930) | 0.8400 | 0.3000 | 0.0000 |  |" in slices
    assert ("| region | south\\|\\<i\\>east\\</i\\> | 8 | 0.6000 (0.310–0.830) | 0.5500 | 0.5000 | 0.2500 | "
            "too small to judge |") in slices
    assert "| length | over 60 tokens | 12 | 0.5000 (0.250–0.750) | 0.4800 | 0.4000 | 0.3500 |  |" in slices
    assert slices.splitlines()[-1] == ("Counterfactual check: swapping protected terms in 50 texts changed 3 "
                                       "predictions (flip rate 6.0%).")
    explained = section(card, "Explanation examples")
    assert explained.splitlines()[:3] == [
        "Method: occlusion, by word.", "",
        "Faithfulness (ERASER comprehensiveness) on 40 texts: removing the 3 most important words lowered the "
        "predicted label's probability by 0.312 on average, against 0.041 for as many random words (ratio 7.6)."]
    assert "| bearish | falls (0.420), miss (0.300) |" in explained
    assert explained.splitlines()[-1] == (
        "- line 12: “Shares \\*soar\\* \\<script\\>x\\</script\\> after miss” — labelled bullish, predicted "
        "bearish at 93.0%; words that drove it: miss (0.610), Shares (0.010)")
    assert "Not evaluated on slices" not in card


def test_the_registered_description_is_the_intended_use_and_user_text_is_escaped(settings, head_artifact):
    source, trained = head_artifact
    registry = open_registry(settings)
    lineage = {**trained.lineage, "label_counts": {"<b>ham</b>": 3, "sp|am": 2}}
    with registry.artifacts.stage() as staged:
        (staged / "tailor_model.json").write_text("{}", encoding="utf-8")
        version = registry.publish_version("acme", "mail", staged, task="classify", base_model="minilm-l6",
                                           method="full", params=trained.params, metrics={}, lineage=lineage,
                                           description="Routes *support* mail.\nNot for <script>HR</script>.")
    card = version_card(registry.store, version)
    assert section(card, "Intended use").splitlines()[:3] == [
        "As its owner describes it:", "", "> Routes \\*support\\* mail. Not for \\<script\\>HR\\</script\\>."]
    assert "into 2 labels: \\<b\\>ham\\</b\\>, sp\\|am." in card
    assert section(card, "Evaluation") == "No test metrics were recorded for this version."
    assert "model-index" not in front_matter(card) and front_matter(card)["tags"][-1] == "full-fine-tune"
    assert "<script>" not in card and "<b>" not in card


def test_a_chat_versions_card(settings, chat_artifact):
    version = publish_copy(settings, chat_artifact, "acme", "reviews")
    card = model_card(version)
    meta = front_matter(card)
    test = version.metrics["test"]
    sha = version.lineage["dataset"]["sha256"]
    assert meta == {
        "base_model": "tiny-llama", "library_name": "peft", "pipeline_tag": "text-generation",
        "tags": ["tailor", "text-generation", "lora"], "datasets": [f"sha256:{sha}"],
        "model-index": [{"name": "reviews:1", "results": [{
            "task": {"type": "text-generation", "name": "Text Generation"},
            "dataset": {"name": f"held-out split of training file {sha[:12]}", "type": f"sha256:{sha}",
                        "split": "test"},
            "metrics": [{"type": "perplexity", "value": round(test["perplexity"], 4), "name": "Perplexity"},
                        {"type": "loss", "value": round(test["loss"], 4), "name": "Loss"},
                        {"type": "accuracy", "value": round(test["token_accuracy"], 4), "name": "Token accuracy"},
                        {"type": "exact_match", "value": round(test["exact_match"], 4), "name": "Exact match"},
                        {"type": "f1", "value": round(test["macro_f1"], 4), "name": "Macro F1",
                         "args": {"average": "macro"}}]}]}]}
    assert "/" not in meta["base_model"]  # a local base is named, never located
    assert ModelCard(card).data.eval_results[0].metric_value == round(test["perplexity"], 4)
    assert headings(card) == [s for s in SECTIONS if s != "Calibration"]
    evaluation = section(card, "Evaluation")
    assert evaluation.splitlines()[0] == (f"On {test['examples']} held-out conversations ({test['tokens']} answer "
                                          "tokens), against the base model:")
    assert f"| perplexity | {test['perplexity']:.4f} | {test['base_perplexity']:.4f} |" in evaluation
    assert section(card, "Evaluation on slices") == "Not evaluated on slices: bias reports score classifiers."
    report = version.lineage["data_report"]
    assert f"Conversations: {report['examples']} conversations; {report['duplicates']} duplicates;" in card
    assert 'tailor chat reviews:1 -m "Hello"' in card


@pytest.mark.parametrize("fmt, library, files", [
    ("hf", "transformers", ["README.md", "chat_template.jinja", "config.json", "generation_config.json",
                            "model.safetensors", "tokenizer.json", "tokenizer_config.json"]),
    ("peft", "peft", ["README.md", "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja",
                      "tokenizer.json", "tokenizer_config.json"]),
])
def test_hf_and_peft_exports_ship_the_card_as_readme(settings, chat_artifact, tmp_path, fmt, library, files):
    from tailor.models.export import export_version

    version = publish_copy(settings, chat_artifact, "acme", "reviews")
    out = tmp_path / fmt
    result = export_version("reviews:1", fmt, out, tenant="acme")
    assert result["files"] == files
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme == version_card(open_registry(settings).store, version, export=fmt)
    assert front_matter(readme)["library_name"] == library
    assert "[More Information Needed]" not in readme  # PEFT's own template is replaced


def test_a_lora_classifiers_hf_export_is_carded_as_merged_transformers(trained, tmp_path):
    from tailor.models.export import export_version

    store = open_registry().store
    version = store.resolve("default", "small-lora")
    export_version("small-lora", "hf", tmp_path / "hf")
    readme = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    assert readme == version_card(store, version, export="hf")
    assert front_matter(readme)["library_name"] == "transformers"
    assert front_matter(version_card(store, version))["library_name"] == "peft"
    assert "; merged into the base's weights in this export" in readme


def test_models_show_card_prints_it(settings, tweets, capsys):
    from tailor.cli import main

    card = version_card(open_registry(settings).store, tweets)
    assert main(["models", "show", "tweets", "--card", "--tenant", "acme"]) == 0
    assert capsys.readouterr().out == card
    assert main(["models", "show", "tweets:1", "--card", "--tenant", "acme", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"model": "tweets:1", "card": card}
    assert main(["models", "show", "tweets:2", "--card", "--tenant", "acme"]) == 2
    assert capsys.readouterr().err == "error: version tweets:2 not found\n"
    assert main(["models", "show", "tweets", "--card"]) == 2  # the default tenant has no such model
    assert capsys.readouterr().err == "error: model 'tweets' not found\n"


def test_a_slice_finder_that_found_nothing_is_reported_as_such(settings, tweets):
    store = open_registry(settings).store
    finder_only = {"data": "cd" * 32, "created_at": "2026-11-30T13:00:00Z", "slice_column": None,
                   "metric": "accuracy", "largest_gap": None, "equal_opportunity": None, "slices": [],
                   "worst_slices": [], "counterfactual": None, "min_rows": 30}
    card = model_card(store.update_metrics("acme", "tweets", 1, {"fairness": finder_only}))
    assert section(card, "Evaluation on slices").splitlines() == [
        f"On file sha256 `{'cd' * 32}` (2026-11-30T13:00:00Z), without a slice column.", "",
        "The automatic slice finder reported no slice where the model does worse (it judges slices of at least 30 "
        "rows).", "", "No counterfactual check was recorded."]
    assert "- Not evaluated on slices" not in card
