"""Model cards: what a registered version is, trained on what, by whom, how well it does and where it fails, in
Hugging Face's format (YAML metadata, then markdown), so the Hub and its tools read Tailor's exports.

A card is generated on demand from the registry, never stored in the artifact: an artifact is sealed (its
files' SHA-256 in a marker) when the version is registered, while the card follows its metrics as later
evaluations add slices, explanations and other test files; every version, those registered before cards
existed included, gets one. Exports that load in Hugging Face's libraries (``--format hf`` and ``peft``)
ship it as ``README.md``.

Everything on the card comes from the version's record: its lineage (datasets by SHA-256, never a path on the
server; the data report; who registered it, where recorded), its metrics (test, baseline, calibration, abstain, ``fairness``,
``explanations``, ``evaluations``) and the catalog's entry for its base. Nothing is claimed that the record
does not hold: a section without data says so. The card holds no clock time of its own, so the same record
always gives the same card.
"""

from __future__ import annotations

from pathlib import PurePath

from tailor.catalog import CATALOG
from tailor.registry.entities import ModelVersion

CARD_FILE = "README.md"
CARD_FORMATS = ("hf", "peft")  # the exports that ship the card: the layouts Hugging Face's libraries load
PIPELINE_TAGS = {"classify": "text-classification", "chat": "text-generation"}
TASK_NAMES = {"text-classification": "Text Classification", "text-generation": "Text Generation"}
METHOD_TAGS = {"full": "full-fine-tune", "lora": "lora", "head": "frozen-encoder", "contrastive": "setfit"}
METHODS = {"full": "full fine-tuning (every weight trained)",
           "lora": "LoRA (low-rank adapters on a frozen base, PEFT's layout)",
           "head": "frozen encoder with a trained linear head on its mean-pooled embeddings",
           "contrastive": "contrastive few-shot (SetFit's recipe): the encoder fine-tuned so that texts with the "
                          "same label embed close together, then a linear head on its mean-pooled embeddings"}
CLASSIFY_INDEX = (("accuracy", "accuracy", "Accuracy", None), ("macro_f1", "f1", "Macro F1", "macro"),
                  ("weighted_f1", "f1", "Weighted F1", "weighted"))
CHAT_INDEX = (("perplexity", "perplexity", "Perplexity", None), ("loss", "loss", "Loss", None),
              ("token_accuracy", "accuracy", "Token accuracy", None),
              ("exact_match", "exact_match", "Exact match", None), ("macro_f1", "f1", "Macro F1", "macro"))
CONTRASTIVE_LOAD = """import json, torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

encoder, tokenizer = AutoModel.from_pretrained("EXPORT_DIR"), AutoTokenizer.from_pretrained("EXPORT_DIR")
head = load_file("EXPORT_DIR/head.safetensors")
labels = json.load(open("EXPORT_DIR/tailor_model.json"))["labels"]
batch = tokenizer(["a text to label"], padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    hidden = encoder(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1)
embedding = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
print(labels[int((embedding @ head["weight"].T + head["bias"]).argmax())])"""
SHOWN_MISTAKES = 5
SHOWN_TOKENS = 5
SHOWN_TEXT = 200  # characters of a text quoted on the card
SMALL_TEST = 100  # below this many test rows, the card says how much one row moves accuracy


# ---- the card ---------------------------------------------------------------------------------------------
def model_card(version: ModelVersion, *, description: str = "", export: str | None = None) -> str:
    """The model card of ``version``: YAML front matter (:func:`card_metadata`), then markdown sections.

    Args:
        description: the registered model's description, written by its owner; it becomes the intended use.
            Without one, the intended use is stated from the task and labels alone.
        export: ``hf`` or ``peft`` when the card ships in that export (its ``library_name`` and usage follow
            the exported layout: a LoRA version exported as ``hf`` is merged into plain transformers weights);
            ``None`` for the version as registered.

    Returns:
        The card as markdown text, ending with a newline.
    """
    sections = [
        _front_matter(card_metadata(version, export=export)),
        _title(version),
        _details(version, export),
        _intended_use(version, description),
        _training_data(version),
        _evaluation(version),
        _slices(version),
        _calibration(version),
        _explanations(version),
        _limitations(version),
        _usage(version, export),
    ]
    return "\n\n".join(section.strip("\n") for section in sections if section) + "\n"


def version_card(store, version: ModelVersion, *, export: str | None = None) -> str:
    """:func:`model_card` of ``version`` with its model's description from ``store`` (a RegistryStore)."""
    description = store.get_model(version.tenant, version.name).description
    return model_card(version, description=description or "", export=export)


def card_metadata(version: ModelVersion, *, export: str | None = None) -> dict:
    """The card's YAML metadata: ``base_model``, ``license`` and ``language`` (where the catalog knows the base),
    ``library_name``, ``pipeline_tag``, ``tags``, ``datasets`` (``sha256:<hex>`` of every file it was trained and
    tested on) and ``model-index`` (the test metrics, in Hugging Face's structure)."""
    base = CATALOG.get(version.base_model)
    pipeline = PIPELINE_TAGS.get(version.task, version.task)
    meta: dict = {"base_model": base_model_id(version.base_model)}
    if base and base.license:
        meta["license"] = base.license
    if base and base.languages:
        meta["language"] = list(base.languages)
    meta["library_name"] = library_name(version, export)
    meta["pipeline_tag"] = pipeline
    meta["tags"] = ["tailor", pipeline, METHOD_TAGS.get(version.method, version.method)]
    hashes = dataset_hashes(version)
    if hashes:
        meta["datasets"] = [f"sha256:{digest}" for digest in hashes]
    index = model_index(version)
    if index:
        meta["model-index"] = index
    return meta


def base_model_id(base_model: str) -> str:
    """The base as the Hub names it: the catalog's Hub id, a local directory's name (never its path on this
    machine), or a Hub name as given."""
    base = CATALOG.get(base_model)
    if base and base.hf_id:
        return base.hf_id
    path = PurePath(base_model)
    return path.name if path.is_absolute() else base_model


def library_name(version: ModelVersion, export: str | None = None) -> str:
    """``peft`` for a LoRA version as registered (an adapter) or exported as an adapter; ``transformers``
    otherwise (a full version, a head-only one whose encoder transformers loads, a LoRA one merged by the
    ``hf`` export)."""
    return "peft" if version.method == "lora" and export != "hf" else "transformers"


def dataset_hashes(version: ModelVersion) -> list[str]:
    """The SHA-256 of the training file, the test file and any file a retrain replayed, in that order, once
    each."""
    lineage = version.lineage
    records = [lineage.get("dataset"), lineage.get("eval_dataset"),
               *((lineage.get("retrain") or {}).get("replay_sources") or [])]
    hashes = [record.get("sha256") for record in records if isinstance(record, dict) and record.get("sha256")]
    return list(dict.fromkeys(hashes))


def model_index(version: ModelVersion) -> list[dict]:
    """The test metrics as Hugging Face's ``model-index``: ``[{"name", "results": [{"task": {"type", "name"},
    "dataset": {"name", "type", "split"}, "metrics": [{"type", "value", "name"[, "args"]}]}]}]``; empty when the
    version has no test metrics."""
    test = version.metrics.get("test") or {}
    fields = CHAT_INDEX if version.task == "chat" else CLASSIFY_INDEX
    metrics = []
    for key, metric_type, name, average in fields:
        if isinstance(test.get(key), (int, float)):
            metric = {"type": metric_type, "value": round(float(test[key]), 4), "name": name}
            if average:
                metric["args"] = {"average": average}
            metrics.append(metric)
    if not metrics:
        return []
    pipeline = PIPELINE_TAGS.get(version.task, version.task)
    return [{"name": version.ref, "results": [{"task": {"type": pipeline, "name": TASK_NAMES.get(pipeline, pipeline)},
                                               "dataset": _test_dataset(version), "metrics": metrics}]}]


def _test_dataset(version: ModelVersion) -> dict:
    """The test set as ``model-index`` names it: the eval file, or the training file's held-out split."""
    lineage = version.lineage
    eval_sha = (lineage.get("eval_dataset") or {}).get("sha256")
    train_sha = (lineage.get("dataset") or {}).get("sha256")
    if eval_sha:
        return {"name": f"test file {eval_sha[:12]}", "type": f"sha256:{eval_sha}", "split": "test"}
    if train_sha:
        return {"name": f"held-out split of training file {train_sha[:12]}", "type": f"sha256:{train_sha}",
                "split": "test"}
    return {"name": "test set (file not recorded)", "type": "unrecorded", "split": "test"}


def _front_matter(meta: dict) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---"


# ---- markdown helpers -------------------------------------------------------------------------------------
_ESCAPED = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|&#"})


def md(value) -> str:
    """``value`` as literal markdown text: characters markdown or HTML would read are escaped, line breaks
    become spaces (the card quotes labels, texts and descriptions it did not write)."""
    return " ".join(str(value).split()).translate(_ESCAPED)


def _code(value) -> str:
    """``value`` as inline code, or as escaped text when it holds a backtick."""
    text = " ".join(str(value).split())
    return md(text) if "`" in text else f"`{text}`"


def _quote(text: str) -> str:
    text = " ".join(str(text).split())
    return md(text if len(text) <= SHOWN_TEXT else text[:SHOWN_TEXT - 1] + "…")


def _num(value, digits: int = 4) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{value * 100:.1f}%"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _section(heading: str, *parts: str) -> str:
    return "\n\n".join([f"## {heading}", *(part for part in parts if part)])


# ---- sections ---------------------------------------------------------------------------------------------
def _title(version: ModelVersion) -> str:
    base = base_model_id(version.base_model)
    if version.task == "chat":
        what = f"A chat model fine-tuned with Tailor from {md(base)} on conversations."
    else:
        labels = _labels(version)
        named = f" into {len(labels)} labels: {', '.join(md(label) for label in labels)}" if labels else ""
        what = f"A text classifier fine-tuned with Tailor from {md(base)}; it sorts texts{named}."
    return f"# {md(version.ref)}\n\n{what}"


def _labels(version: ModelVersion) -> list[str]:
    counts = version.lineage.get("label_counts")
    if counts:
        return sorted(counts)
    return sorted(((version.metrics.get("test") or {}).get("per_class") or {}))


def _registered_by(version: ModelVersion) -> str:
    """Who registered the version, as far as its record says: an actor if recorded, else the fine-tuning job an
    ``ft:`` id names (the API's jobs name their models so), else that it was not recorded."""
    actor = version.lineage.get("actor")
    if actor:
        return md(actor)
    if version.name.startswith("ft:") and version.name.count(":") >= 4:
        return f"fine-tuning job `{version.name.rsplit(':', 1)[1]}` of tenant {md(version.tenant)} (through the API)"
    return "not recorded"


def _details(version: ModelVersion, export: str | None) -> str:
    lineage, params = version.lineage, version.params
    base = CATALOG.get(version.base_model)
    base_text = md(version.base_model if base else base_model_id(version.base_model))
    if base and base.hf_id:
        base_text += f" ([{md(base.hf_id)}](https://huggingface.co/{base.hf_id}), licence {md(base.license or '?')})"
    method = METHODS.get(version.method, md(version.method))
    if version.method == "full" and _pooled(version):
        method = ("full fine-tuning over the mean-pooled embedding: a linear head fitted on the frozen encoder "
                  "first, then the encoder and head trained together")
    if export == "hf" and version.method == "lora":
        method += "; merged into the base's weights in this export"
    rows = [["Model", f"`{version.ref}` (version {version.version} of {md(version.name)})"],
            ["Tenant", md(version.tenant)],
            ["Task", "text classification" if version.task == "classify" else "chat (text generation)"],
            ["Method", method + (f" — {md(lineage['method_reason'])}" if lineage.get("method_reason") else "")],
            ["Base model", base_text + (f" — {md(lineage['base_reason'])}" if lineage.get("base_reason") else "")],
            ["Registered", version.created_at.isoformat(timespec="seconds")],
            ["Registered by", _registered_by(version)]]
    if lineage.get("parent"):
        rows.append(["Retrained from", f"`{lineage['parent']}`"])
    training = _training_facts(version)
    if training:
        rows.append(["Training", training])
    hyper = [f"{key.replace('_', ' ')} {params[key]}"
             for key in ("epochs", "lr", "lora_r", "batch_size", "max_length", "seed")
             if params.get(key) is not None and (key != "lora_r" or version.method == "lora")]
    if hyper:
        rows.append(["Hyperparameters", ", ".join(md(h) for h in hyper)])
    if lineage.get("tailor_version"):
        rows.append(["Tailor version", md(lineage["tailor_version"])])
    return _section("Model details", _table(["", ""], rows))


def _training_facts(version: ModelVersion) -> str:
    lineage = version.lineage
    facts = []
    if lineage.get("stop_reason"):
        facts.append(f"stopped by {_code(lineage['stop_reason'])}")
    if lineage.get("device"):
        precision = f" ({md(lineage['precision'])})" if lineage.get("precision") else ""
        facts.append(f"on {md(lineage['device'])}{precision}")
    total = (lineage.get("timings") or {}).get("total_s")
    if isinstance(total, (int, float)):
        facts.append(f"took {total:.1f} s")
    return ", ".join(facts)


def _intended_use(version: ModelVersion, description: str) -> str:
    max_length = version.params.get("max_length")
    length = f" of up to {max_length} tokens" if max_length else ""
    if description.strip():
        intended = f"As its owner describes it:\n\n> {md(description)}"
    elif version.task == "chat":
        intended = (f"Answering conversations{length} like those it was trained on, in the style of their "
                    "assistant turns. No description was registered: what the conversations are about is not "
                    "stated beyond the training data summarised below.")
    else:
        labels = _labels(version)
        named = ", ".join(md(label) for label in labels) or "its training labels"
        intended = (f"Assigning one of the labels {named} to texts{length} like those it was trained on. No "
                    "description was registered: the labels mean what they meant in the training data, and this "
                    "card knows nothing of them beyond their names.")
    scope = ("Out of scope: texts unlike the training data (another domain, another language than the base "
             "model's, longer than the token limit), ")
    scope += ("questions outside the conversations' subject, " if version.task == "chat" else
              "labels other than these (the model always answers one of them unless asked to abstain), ")
    scope += ("and decisions with legal or similarly significant effects on people taken on its answers alone, "
              "without human review: the evaluation below does not cover them.")
    return _section("Intended use", intended, scope)


# ---- training data ----------------------------------------------------------------------------------------
def _dataset_line(kind: str, record: dict | None) -> str | None:
    if not isinstance(record, dict) or not record.get("sha256"):
        return None
    facts = [f"sha256 `{record['sha256']}`"]
    if record.get("format"):
        facts.append(md(record["format"]))
    if record.get("rows_read") is not None:
        facts.append(f"{record['rows_read']} rows read")
    return f"- {kind}: " + ", ".join(facts)


def _training_data(version: ModelVersion) -> str:
    lineage = version.lineage
    report = lineage.get("data_report") or {}
    files = [line for line in (_dataset_line("Training file", lineage.get("dataset")),
                               _dataset_line("Test file", lineage.get("eval_dataset")),
                               *(_dataset_line("Replayed file", record) for record in
                                 (lineage.get("retrain") or {}).get("replay_sources") or []))
             if line]
    if lineage.get("dataset") and not lineage.get("eval_dataset"):
        files.append("- Test set: held out from the training file (no separate test file)")
    split = lineage.get("rows") or {}
    if split:
        files.append(f"- Split: {split.get('train', '?')} training, {split.get('valid', '?')} validation, "
                     f"{split.get('test', '?')} test rows")
    retrain = (lineage.get("retrain") or {}).get("rows") or {}
    if retrain:
        files.append(f"- Retrain rows: {retrain.get('file', 0)} from a file, {retrain.get('feedback', 0)} from "
                     f"feedback labels, {retrain.get('replay', 0)} replayed")
    files += _label_sources(lineage)
    body = "\n".join(files) if files else "The version's record names no training file."
    parts = [body]
    parts += _chat_data(report) if version.task == "chat" else _classify_data(version, report)
    if report.get("warnings"):
        parts.append("Warnings of the data check:\n\n" + "\n".join(f"- {md(w)}" for w in report["warnings"]))
    return _section("Training data", *parts)


def _label_sources(lineage: dict) -> list[str]:
    """Lines for labels that came from no labelled row: a zero-shot version's label names, self-training's
    pseudo-labels on an unlabelled file."""
    lines = []
    zero_shot = lineage.get("zero_shot")
    if zero_shot:
        prompts = "; ".join(f"“{md(p)}”" for p in zero_shot.get("prompts") or [])
        lines.append(f"- Zero-shot: no labelled row; each label is the embedding of its prompt ({prompts}), "
                     f"scaled by {_num(zero_shot.get('scale'), 2)}")
    self_training = lineage.get("self_training")
    if self_training and self_training.get("skipped"):
        lines.append(f"- Unlabelled file {md(self_training['pool'].get('path'))}: not used "
                     f"({md(self_training['skipped'])})")
    elif self_training:
        lines.append(f"- Self-training: {self_training.get('pseudo_labels_used', 0)} pseudo-labels from "
                     f"{self_training['pool'].get('used', '?')} unlabelled texts (SHA-256 "
                     f"{_code(self_training['pool'].get('sha256', '?'))}); validation macro-F1 "
                     f"{_num(self_training.get('valid_macro_f1_without'))} without, "
                     f"{_num(self_training.get('valid_macro_f1_with'))} with")
    return lines


def _classify_data(version: ModelVersion, report: dict) -> list[str]:
    parts = []
    counts = version.lineage.get("label_counts") or {}
    if counts:
        kept = ((report.get("labels") or {}).get("counts")) or {}
        rows = [[md(label), n, kept.get(label, "—")] for label, n in sorted(counts.items())]
        parts.append(_table(["label", "training rows", "rows after cleaning (before the split)"], rows))
    rows_info = report.get("rows") or {}
    removed = rows_info.get("removed") or {}
    if rows_info:
        dropped = [f"{reason.replace('_', ' ')} {n}" for reason, n in removed.items() if n]
        parts.append(f"Cleaning: {rows_info.get('read', '?')} rows read, {rows_info.get('kept', '?')} kept; removed: "
                     + (", ".join(dropped) if dropped else "none") + ".")
    pii = report.get("pii")
    if pii:
        kinds = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in pii.items() if kind != "rows_with_pii")
        parts.append(f"Personal data found in the kept rows: {kinds} ({pii.get('rows_with_pii', 0)} rows with any).")
    redacted = report.get("redacted")
    if redacted:
        kinds = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in redacted.items() if kind != "rows_redacted")
        parts.append(f"Personal data redacted before training: {kinds} ({redacted.get('rows_redacted', 0)} rows).")
    leakage = report.get("leakage")
    if leakage:
        parts.append(f"Leakage: {leakage.get('leaked_rows', 0)} training rows repeated a test row and were removed "
                     f"(test file: {leakage.get('eval_rows', '?')} rows).")
    issues = report.get("label_issues") or {}
    if issues.get("count"):
        parts.append(f"Likely label errors: {issues['count']} rows whose label a model trained on the other rows "
                     "confidently disputes.")
    return parts


def _chat_data(report: dict) -> list[str]:
    if not report:
        return []
    facts = [f"{report.get('examples', '?')} conversations"]
    if report.get("duplicates"):
        facts.append(f"{report['duplicates']} duplicates")
    if report.get("leaked_into_eval"):
        facts.append(f"{report['leaked_into_eval']} repeated in the test file")
    over = report.get("over_limit") or {}
    truncated, dropped = (over.get("truncated") or {}).get("count"), (over.get("dropped") or {}).get("count")
    if truncated or dropped:
        facts.append(f"{truncated or 0} truncated and {dropped or 0} dropped at {over.get('max_length', '?')} tokens")
    tokens = report.get("tokens") or {}
    if tokens:
        facts.append(f"tokens per conversation: median {tokens.get('p50', '?')}, 95th percentile "
                     f"{tokens.get('p95', '?')}, longest {tokens.get('max', '?')}")
    return ["Conversations: " + "; ".join(facts) + "."]


# ---- evaluation -------------------------------------------------------------------------------------------
def _evaluation(version: ModelVersion) -> str:
    test = version.metrics.get("test") or {}
    if not test:
        return _section("Evaluation", "No test metrics were recorded for this version.")
    parts = _chat_evaluation(version, test) if version.task == "chat" else _classify_evaluation(version, test)
    others = version.metrics.get("evaluations") or {}
    if others:
        rows = [[f"`{md(key)}`", record.get("rows", "—"), md(record.get("created_at", "—")),
                 _num(record.get("accuracy")), _num(record.get("macro_f1")), _num(record.get("weighted_f1"))]
                for key, record in sorted(others.items(), key=lambda item: str(item[1].get("created_at", "")))]
        parts.append("Later evaluations on other files (by the first 12 hex digits of their SHA-256):\n\n"
                     + _table(["file", "rows", "when", "accuracy", "macro-F1", "weighted-F1"], rows))
    return _section("Evaluation", *parts)


def _classify_evaluation(version: ModelVersion, test: dict) -> list[str]:
    baseline = version.metrics.get("baseline") or {}
    where = "the test file" if (version.lineage.get("eval_dataset") or {}).get("sha256") else "the held-out test split"
    beside = f", beside the majority baseline (always “{md(baseline['label'])}”):" if baseline.get("label") else ":"
    parts = [f"On {where} ({test.get('n', '?')} rows){beside}"]
    zero_shot = baseline.get("zero_shot") or {}
    scored = "macro_f1" in zero_shot  # a zero-shot baseline that could be computed (else it says why not)
    rows = [[name, _num(test.get(key)), _num(baseline.get(key))] + ([_num(zero_shot.get(key))] if scored else [])
            for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted-F1"))]
    rows += [[name, _num(test.get(key)), "—"] + (["—"] if scored else []) for key, name in
             (("roc_auc", "ROC-AUC"), ("ece", "expected calibration error"), ("log_loss", "log loss"))
             if test.get(key) is not None]
    parts.append(_table(["metric", "this version", "majority baseline"] + (["zero-shot baseline"] if scored else []),
                        rows))
    if scored:
        parts.append("The zero-shot baseline is the base model with no training, choosing the label whose name is "
                     "nearest each text's embedding.")
    per_class = test.get("per_class") or {}
    if per_class:
        parts.append(_table(["label", "precision", "recall", "F1", "support"],
                            [[md(label), _num(s.get("precision")), _num(s.get("recall")), _num(s.get("f1")),
                              s.get("support", "—")] for label, s in per_class.items()]))
    abstain = version.metrics.get("abstain")
    if abstain:
        if abstain.get("reachable"):
            parts.append(f"Abstaining: below a top probability of {_num(abstain.get('threshold'), 3)} the model can "
                         f"leave a text unanswered; on {abstain.get('rows', '?')} validation rows that answers "
                         f"{_pct(abstain.get('coverage'))} of them at {_pct(abstain.get('accuracy'))} accuracy (target "
                         f"{_pct(abstain.get('target_precision'))}). Off unless a request asks for it.")
        else:
            parts.append(f"Abstaining: no threshold reaches {_pct(abstain.get('target_precision'))} accuracy on the "
                         f"validation rows ({md(abstain.get('note') or 'none recorded')}).")
    return parts


def _chat_evaluation(version: ModelVersion, test: dict) -> list[str]:
    rows = [[name, _num(test.get(key)), _num(test.get(base)) if base else "—"]
            for key, base, name in (("loss", "base_loss", "loss"), ("perplexity", "base_perplexity", "perplexity"),
                                    ("token_accuracy", "base_token_accuracy", "token accuracy"),
                                    ("exact_match", None, "exact match"), ("macro_f1", None, "macro-F1"))
            if test.get(key) is not None]
    parts = [f"On {test.get('examples', '?')} held-out conversations ({test.get('tokens', '?')} answer tokens), "
             "against the base model:", _table(["metric", "this version", "base model"], rows)]
    samples = version.metrics.get("samples") or []
    if samples:
        parts.append("Sample answers:\n\n" + "\n".join(
            f"- prompt: {_quote(s.get('prompt', ''))} — reference: {_quote(s.get('reference', ''))} — this "
            f"version: {_quote(s.get('tuned', ''))}" for s in samples[:3]))
    return parts


def _slices(version: ModelVersion) -> str:
    fairness = version.metrics.get("fairness")
    if not fairness and version.task == "chat":
        return _section("Evaluation on slices", "Not evaluated on slices: bias reports score classifiers.")
    if not fairness:
        return _section("Evaluation on slices", "Not evaluated on slices: no bias report was recorded for this "
                        "version. `tailor eval MODEL FILE --slice-col COLUMN` scores every slice of a column and "
                        "records it here.")
    head = f"On file sha256 `{md(fairness.get('data', '?'))}` ({md(fairness.get('created_at', '?'))})"
    column = fairness.get("slice_column")
    head += f", sliced by column {md(column)}." if column else ", without a slice column."
    facts = []
    if fairness.get("largest_gap") is not None:
        facts.append(f"largest {md(fairness.get('metric', 'accuracy'))} gap to the best slice: "
                     f"{_num(fairness['largest_gap'])}")
    if fairness.get("equal_opportunity") is not None:
        facts.append(f"equal-opportunity difference: {_num(fairness['equal_opportunity'])}")
    summary = "; ".join(facts)
    parts = [head + (f" {summary[:1].upper()}{summary[1:]}." if facts else "")]
    if fairness.get("slices"):
        parts.append(_slice_table(fairness["slices"]))
    if fairness.get("worst_slices"):
        parts.append("Where the model does worst (found automatically):\n\n" + _slice_table(fairness["worst_slices"]))
    elif not fairness.get("slices"):
        least = f" (it judges slices of at least {fairness['min_rows']} rows)" if fairness.get("min_rows") else ""
        parts.append(f"The automatic slice finder reported no slice where the model does worse{least}.")
    counterfactual = fairness.get("counterfactual")
    if counterfactual:
        parts.append(f"Counterfactual check: swapping protected terms in "
                     f"{counterfactual.get('checked', 0)} texts changed {counterfactual.get('flipped', 0)} "
                     f"predictions (flip rate {_pct(counterfactual.get('flip_rate'))}).")
    else:
        parts.append("No counterfactual check was recorded.")
    return _section("Evaluation on slices", *parts)


def _slice_table(slices: list[dict]) -> str:
    rows = []
    for s in slices:
        low, high = (s.get("accuracy_ci") or [None, None])[:2]
        interval = f" ({_num(low, 3)}–{_num(high, 3)})" if low is not None and high is not None else ""
        rows.append([md(s.get("column", "")), md(s.get("value", "")), s.get("n", "—"),
                     _num(s.get("accuracy")) + interval, _num(s.get("macro_f1")), _num(s.get("positive_rate")),
                     _num(s.get("gap")), "too small to judge" if s.get("too_small") else ""])
    return _table(["column", "value", "rows", "accuracy (95% CI)", "macro-F1", "positive rate", "gap", "note"], rows)


def _calibration(version: ModelVersion) -> str:
    calibration = version.metrics.get("calibration")
    if version.task == "chat":
        return ""
    if not calibration:
        return _section("Calibration", "No calibration was recorded: the probabilities are the model's own.")
    if not calibration.get("fitted"):
        text = (f"Not fitted: {calibration.get('rows', '?')} validation rows are too few, so the temperature stays "
                f"{_num(calibration.get('temperature'), 2)} and the probabilities are the model's own.")
    else:
        text = (f"Temperature scaling fitted on {calibration.get('rows', '?')} validation rows: T = "
                f"{_num(calibration.get('temperature'), 3)}")
        if calibration.get("ece_before") is not None and calibration.get("ece_after") is not None:
            text += (f"; expected calibration error {_num(calibration['ece_before'])} before, "
                     f"{_num(calibration['ece_after'])} after")
        text += "."
        if calibration.get("capped"):
            text += (f" With so few validation mistakes the temperature was held so that the mean confidence stays at "
                     f"most {_pct(calibration.get('accuracy_bound'))}, the accuracy the rows support.")
    return _section("Calibration", text, "Calibration never changes a label, only how sure the model says it is.")


def _explanations(version: ModelVersion) -> str:
    explanations = version.metrics.get("explanations")
    if not explanations and version.task == "chat":
        return _section("Explanation examples", "None: explanations are computed for classifiers.")
    if not explanations:
        return _section("Explanation examples", "No explanations were recorded for this version; "
                        "`tailor predict MODEL TEXT --explain` explains a single prediction.")
    parts = [f"Method: {md(explanations.get('method', '?'))}, by {md(explanations.get('unit', 'word'))}."]
    faith = explanations.get("faithfulness")
    if faith:
        parts.append(f"Faithfulness (ERASER comprehensiveness) on {faith.get('texts', '?')} texts: removing the "
                     f"{faith.get('k', '?')} most important words lowered the predicted label's probability by "
                     f"{_num(faith.get('comprehensiveness'), 3)} on average, against {_num(faith.get('random'), 3)} "
                     f"for as many random words (ratio {_num(faith.get('ratio'), 1)}).")
    top = explanations.get("top_words") or {}
    if top:
        rows = [[md(label), ", ".join(f"{md(w.get('word', ''))} ({_num(w.get('weight'), 3)})" for w in words[:8])
                 or "—"] for label, words in top.items()]
        parts.append("Words most associated with each label:\n\n" + _table(["label", "words (weight)"], rows))
    mistakes = explanations.get("mistakes") or []
    if mistakes:
        lines = []
        for m in mistakes[:SHOWN_MISTAKES]:
            pushing = [t for t in m.get("explanation") or [] if t.get("weight", 0) > 0]  # towards the prediction
            tokens = sorted(pushing, key=lambda t: -t["weight"])[:SHOWN_TOKENS]
            why = ", ".join(f"{md(t.get('token', ''))} ({_num(t.get('weight'), 3)})" for t in tokens)
            lines.append(f"- line {m.get('line', '?')}: “{_quote(m.get('text', ''))}” — labelled "
                         f"{md(m.get('label', '?'))}, predicted {md(m.get('predicted', '?'))} at "
                         f"{_pct(m.get('confidence'))}" + (f"; words that drove it: {why}" if why else ""))
        parts.append("Its most confident mistakes on the test set, with the words behind them:\n\n" + "\n".join(lines))
    return _section("Explanation examples", *parts)


# ---- limitations and usage ----------------------------------------------------------------------------------
def _limitations(version: ModelVersion) -> str:
    lineage, metrics = version.lineage, version.metrics
    report = lineage.get("data_report") or {}
    base = CATALOG.get(version.base_model)
    items = []
    if base and base.languages:
        languages = ", ".join(base.languages)
        items.append(f"Languages: the base model covers {md(languages)}"
                     + (f"; the training texts: {md(lineage['base_reason'].split(':')[0])}." if
                        lineage.get("base_reason") and lineage["base_reason"] != "chosen by the user" else "."))
    else:
        items.append("Languages: not known for this base model; only those of the training data were seen.")
    max_length = version.params.get("max_length")
    if max_length and version.task == "chat":
        items.append(f"Conversations longer than {max_length} tokens were cut to their start in training (or "
                     "left out when no answer token remained).")
    elif max_length:
        over = ((report.get("lengths") or {}).get("tokens") or {}).get("over_max_length")
        items.append(f"Texts longer than {max_length} tokens are cut to their first {max_length}"
                     + (f" ({over} training texts were)." if over else "."))
    for small in report.get("small_classes") or []:
        items.append(f"Class {md(small.get('label', '?'))} has {small.get('count', '?')} rows: "
                     f"{md(small.get('problem', 'few'))}.")
    labels = report.get("labels") or {}
    if isinstance(labels.get("imbalance_ratio"), (int, float)) and labels["imbalance_ratio"] >= 3:
        items.append(f"Imbalanced labels: the largest class has {labels['imbalance_ratio']:.1f}× the rows of the "
                     "smallest.")
    n = (metrics.get("test") or {}).get("n")
    if isinstance(n, int) and 0 < n < SMALL_TEST:
        items.append(f"Measured on {n} test rows only: one row moves accuracy by {100 / n:.1f} points.")
    calibration = metrics.get("calibration") or {}
    if calibration and not calibration.get("fitted") and version.task == "classify":
        items.append("Probabilities are uncalibrated (too few validation rows to fit a temperature).")
    if calibration.get("capped"):
        items.append("Calibration is capped: with almost no validation mistakes, confidence is held to what the rows "
                     "support.")
    if (metrics.get("abstain") or {}).get("reachable") is False:
        items.append("No abstain threshold reaches its target accuracy on the validation rows.")
    issues = report.get("label_issues") or {}
    if (issues.get("model") or {}).get("reliable") is False:
        items.append("The label-error check was inconclusive (its model agreed with the labels only weakly).")
    if not metrics.get("fairness"):
        items.append("Not evaluated on slices: differences between groups of people are unknown.")
    items.append("A fine-tuned model keeps what its base model learned, biases included.")
    return _section("Limitations", "\n".join(f"- {item}" for item in items))


def _pooled(version: ModelVersion) -> bool:
    """The version's head reads the mean-pooled embedding (a contrastive version, or a full one over a base
    without a trained pooler: ``lineage["pooling"]``)."""
    return version.method == "contrastive" or (version.lineage or {}).get("pooling") == "mean"


def _usage(version: ModelVersion, export: str | None) -> str:
    ref = version.ref
    if version.task == "chat":
        cli = f'tailor chat {ref} -m "Hello"'
        api = ("curl $TAILOR_URL/v1/chat/completions -H \"Authorization: Bearer $TAILOR_KEY\" \\\n"
               f"  -d '{{\"model\": \"{ref}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'")
        load = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                "model = AutoModelForCausalLM.from_pretrained(\"EXPORT_DIR\")\n"
                "tokenizer = AutoTokenizer.from_pretrained(\"EXPORT_DIR\")")
    else:
        cli = f'tailor predict {ref} "a text to label"'
        api = ("curl $TAILOR_URL/v1/classifications -H \"Authorization: Bearer $TAILOR_KEY\" \\\n"
               f"  -d '{{\"model\": \"{ref}\", \"input\": [\"a text to label\"]}}'")
        load = ("from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                "model = AutoModelForSequenceClassification.from_pretrained(\"EXPORT_DIR\")\n"
                "tokenizer = AutoTokenizer.from_pretrained(\"EXPORT_DIR\")")
    parts = ["With Tailor's CLI, or its API:", f"```bash\n{cli}\n{api}\n```"]
    if export == "peft":
        parts += ["This directory is the LoRA adapter; load it over its base with PEFT:",
                  "```python\nfrom peft import AutoPeftModel\n\nmodel = AutoPeftModel" +
                  ("ForCausalLM" if version.task == "chat" else "ForSequenceClassification") +
                  ".from_pretrained(\"EXPORT_DIR\")\n```"]
    elif version.method == "head" and version.task == "classify":
        parts += ["A head-only version exports as ONNX: `tailor models export " + ref + " --format onnx --out DIR`."]
    elif version.method in ("contrastive", "full") and _pooled(version):
        where = "this directory" if export == "hf" else f"`tailor models export {ref} --format hf --out EXPORT_DIR`"
        parts += [f"{where[0].upper()}{where[1:]} holds the fine-tuned encoder and its linear head "
                  "(`head.safetensors`; labels in `tailor_model.json`); the logits are the head applied to the "
                  "mean-pooled, L2-normalised embedding:", f"```python\n{CONTRASTIVE_LOAD}\n```"]
    else:
        where = "this directory" if export == "hf" else f"`tailor models export {ref} --format hf --out EXPORT_DIR`"
        parts += [f"Plain transformers loads {where}:", f"```python\n{load}\n```"]
    parts.append(f"This card: `tailor models show {ref} --card`, or `GET /v1/models/{ref}/card`.")
    return _section("How to use", *parts)
