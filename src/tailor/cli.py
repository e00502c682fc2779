"""The ``tailor`` command: a table of verbs, each wiring library calls (no logic lives here).

Errors meant for the user print as one line on stderr with exit code 2 (bad input or usage) or 1
(failure); ``--debug`` shows the traceback. ``--json`` prints one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from tailor import __version__
from tailor.cli_audit import note_audit, run_audited


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1.5h``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 90s, 10m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _emit_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


def _show(args, result: dict, text: str) -> int:
    """Print ``result`` as JSON with ``--json``, else ``text`` and where the HTML report went."""
    if args.json:
        _emit_json(result)
        return 0
    print(text)
    if getattr(args, "report", None):
        print(f"HTML report: {args.report}")
    return 0


def _console():
    from rich.console import Console

    return Console()


# ---- data -------------------------------------------------------------------------------------------------
def cmd_data_check(args) -> int:
    from tailor.catalog import AUTO, choose_base, resolve_base
    from tailor.data.clean import clean_dataset
    from tailor.data.ingest import read_dataset
    from tailor.data.report import build_data_report, format_data_report_text, render_data_report_html
    from tailor.data.validate import check_trainable
    from tailor.runtime import setup_torch
    from tailor.settings import get_settings
    from tailor.train.progress import ConsoleReporter

    settings = get_settings()
    raw = read_dataset(args.file, args.text_col, args.label_col, max_bytes=settings.max_file_bytes)
    eval_ds = None
    if args.eval_file:
        eval_ds = read_dataset(args.eval_file, args.text_col or raw.source.text_col,
                               args.label_col or raw.source.label_col, max_bytes=settings.max_file_bytes)
    cleaned = clean_dataset(raw, max_chars=settings.max_text_chars, eval_ds=eval_ds, redact_pii=args.redact_pii)
    check_trainable(cleaned.dataset)  # a file training would refuse fails its check too (exit 2)
    tokenizer = None
    if not args.no_tokens:
        setup_torch()
        from transformers import AutoTokenizer

        base = choose_base(cleaned.dataset.texts)[0] if args.base == AUTO else args.base
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(base, progress=ConsoleReporter()).path)
    report = build_data_report(raw, cleaned, eval_ds=eval_ds, tokenizer=tokenizer, max_length=args.max_length)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(render_data_report_html(report))
    return _show(args, report, format_data_report_text(report))


# ---- train ------------------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from tailor.train.job import run_classification_job
    from tailor.train.progress import ConsoleReporter

    if args.task == "chat":
        if args.unlabeled:
            from tailor.errors import UsageError

            raise UsageError("--unlabeled applies to classification (self-training); a chat model learns from its "
                             "conversations only")
        if args.full_pooling:
            from tailor.errors import UsageError

            raise UsageError("--full-pooling applies to classification (method full's head); a chat model has none")
        if args.augment:
            from tailor.errors import UsageError

            raise UsageError("--augment applies to classification (edited copies of labelled texts); a chat model "
                             "learns from its conversations as written")
        if args.label_prior is not None:
            from tailor.errors import UsageError

            raise UsageError("--label-prior applies to classification (a new head starts from the label names); a "
                             "chat model has no labels")
        return cmd_train_chat(args)
    if args.strict:
        from tailor.errors import UsageError

        raise UsageError("--strict applies to --task chat (over-long conversations); classification drops "
                         "over-long rows and reports them")
    overrides = {"base": args.base, "method": args.method, "epochs": args.epochs, "lr": args.lr,
                 "batch_size": args.batch_size, "max_length": args.max_length, "seed": args.seed,
                 "time_budget_s": args.time_budget, "device": args.device, "full_pooling": args.full_pooling,
                 "augment": args.augment, "label_prior": args.label_prior}
    result = run_classification_job(
        args.file, eval_file=args.eval_file, text_col=args.text_col, label_col=args.label_col, name=args.name,
        tenant=args.tenant, preset=args.preset, search=args.search, resume=args.resume, new_labels=args.new_labels,
        redact_pii=args.redact_pii, reporter=ConsoleReporter(), actor=_cli_actor(), unlabeled=args.unlabeled,
        unlabeled_text_col=args.unlabeled_text_col, **{k: v for k, v in overrides.items() if v is not None})
    summary = result.summary()
    note_audit(args, model=summary["model"])
    if args.json:
        _emit_json(summary)
    else:
        from tailor.eval.report import format_eval_text

        print(format_eval_text({"model": summary["model"], "data": args.eval_file or "test split",
                                "metrics": result.metrics, "baseline": result.baseline,
                                "base_model": summary["base_model"]}))
        if result.self_training:
            print("\n" + _self_training_line(result.self_training))
        print(f"\nregistered {summary['model']}  (method {summary['method']}, {summary['timings']['total_s']}s)")
    return 0


def _self_training_line(record: dict) -> str:
    """What self-training did, or why the unlabelled file was not used."""
    from tailor.train.self_training import describe_self_training

    if "skipped" in record:
        return f"unlabelled file not used: {record['skipped']}"
    return describe_self_training(record)


def _add_unlabeled(parser) -> None:
    parser.add_argument("--unlabeled", metavar="FILE", help="unlabelled texts to learn from by self-training (a .txt "
                                                            "file, one per line, or CSV/TSV/JSONL with a text column)")
    parser.add_argument("--unlabeled-text-col", metavar="COLUMN", help="the unlabelled file's text column (else "
                                                                       "guessed)")


def cmd_retrain(args) -> int:
    from tailor.train.progress import ConsoleReporter
    from tailor.train.retrain import run_retrain

    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                 "device": args.device, "replay": args.replay}
    result = run_retrain(args.ref, file=args.file, feedback=not args.no_feedback,
                         tenant=args.tenant, name=args.name, new_labels=args.new_labels, text_col=args.text_col,
                         label_col=args.label_col, eval_file=args.eval_file, preset=args.preset,
                         reporter=ConsoleReporter(), actor=_cli_actor(), unlabeled=args.unlabeled,
                         unlabeled_text_col=args.unlabeled_text_col,
                         **{k: v for k, v in overrides.items() if v is not None})
    summary = {**result.summary(), "parent": result.version.lineage["parent"],
               "rows_from": result.version.lineage["retrain"]["rows"]}
    note_audit(args, model=summary["model"])
    rows = summary["rows_from"]
    return _show(args, summary, f"registered {summary['model']} from {summary['parent']} ({rows['file']} file rows, "
                                f"{rows['feedback']} feedback rows, {rows['replay']} replayed; test macro-F1 "
                                f"{result.metrics['macro_f1']:.4f})")


def cmd_train_chat(args) -> int:
    from tailor.errors import UsageError
    from tailor.eval.generation import format_chat_eval_text
    from tailor.train.chat_job import run_chat_job
    from tailor.train.progress import ConsoleReporter

    unsupported = [flag for flag, value in (("--method", args.method), ("--search", args.search),
                                            ("--text-col", args.text_col), ("--label-col", args.label_col),
                                            ("--new-labels", args.new_labels)) if value]
    if unsupported:
        raise UsageError(f"--task chat does not use {', '.join(unsupported)} (classification options)")
    overrides = {"base": args.base, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "max_length": args.max_length, "seed": args.seed, "time_budget_s": args.time_budget,
                 "device": args.device, "strict": args.strict or None}
    result = run_chat_job(args.file, eval_file=args.eval_file, name=args.name, tenant=args.tenant,
                          preset=args.preset, resume=args.resume, redact_pii=args.redact_pii,
                          reporter=ConsoleReporter(), actor=_cli_actor(),
                          **{k: v for k, v in overrides.items() if v is not None})
    summary = result.summary()
    note_audit(args, model=summary["model"])
    if args.json:
        _emit_json(summary)
    else:
        print(format_chat_eval_text(result.evaluation))
        print(f"\nregistered {summary['model']}  (LoRA on {summary['base_model']}, {summary['timings']['total_s']}s)")
    return 0


# ---- eval / predict ---------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from tailor.eval.fairness import format_fairness_text
    from tailor.eval.report import format_eval_text
    from tailor.eval.run import evaluate_model

    evaluation = evaluate_model(args.ref, args.file, text_col=args.text_col, label_col=args.label_col,
                                tenant=args.tenant, report_path=args.report, slice_col=args.slice_col,
                                positive_label=args.positive_label, counterfactual=args.counterfactual,
                                terms_path=args.terms)
    return _show(args, evaluation,
                 format_eval_text(evaluation) + "\n" + format_fairness_text(evaluation["fairness"]))


def _read_lines(path: str) -> list[str]:
    from tailor.errors import DataError

    try:
        with open(path, encoding="utf-8-sig") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def cmd_predict(args) -> int:
    from tailor.errors import UsageError
    from tailor.eval.abstain import check_threshold, recorded_threshold
    from tailor.registry.service import load_classifier

    texts = list(args.texts) + (_read_lines(args.file) if args.file else [])
    if not texts:
        raise UsageError("give texts to classify, or --file with one text per line")
    threshold = None if args.abstain_threshold is None else check_threshold(args.abstain_threshold,
                                                                           "--abstain-threshold")
    if args.all_labels and not args.explain:
        raise UsageError("--all-labels explains every label: give it with --explain")
    classifier = load_classifier(args.ref, tenant=args.tenant)
    if args.abstain and threshold is None:
        threshold = recorded_threshold(classifier.version, how="with --abstain-threshold")
    explained = [None] * len(texts)
    if args.explain:  # one batched call scores the texts and their occlusion variants alike
        from tailor.models.classifier import predictions_from_probs
        from tailor.models.explain import explain_texts

        explained = explain_texts(classifier.predict_proba, classifier.labels, texts, all_labels=args.all_labels)
        predictions = predictions_from_probs(classifier.labels, [e.probs for e in explained], threshold)
    else:
        predictions = classifier.predict(texts, abstain_threshold=threshold)
    if args.json:
        out = {"model": classifier.version.ref, "predictions": []}
        for text, p, e in zip(texts, predictions, explained):
            row = {"text": text, "label": p.label, "score": p.score, "scores": p.scores}
            if threshold is not None:  # the abstain fields only when asked for, as the API does
                row |= {"abstained": p.abstained} | ({"reason": p.reason} if p.abstained else {})
            if e is not None:
                row |= {"explanation": e.tokens} | ({"explanations": e.by_label} if e.by_label else {})
            out["predictions"].append(row)
        _emit_json(out | ({"abstain_threshold": threshold} if threshold is not None else {}))
    else:
        for text, p, e in zip(texts, predictions, explained):
            print(f"{'(abstain)' if p.abstained else p.label}\t{p.score:.3f}\t{text}")
            if e is not None:
                print("\n".join(_explanation_lines(e)))
    return 0


def _explanation_lines(explanation) -> list[str]:
    """An explanation for the terminal: each word's weight, strongest first, under its label's name."""
    from tailor.models.explain import strongest_first

    by_label = explanation.by_label or {explanation.label: explanation.tokens}
    lines = []
    for label, tokens in by_label.items():
        lines.append(f"  {label}: each word's weight (the probability lost without it), strongest first")
        lines += [f"    {t['weight']:+.4f}  {t['token']}" for t in strongest_first(tokens)] or ["    (no words)"]
    return lines


def cmd_compare(args) -> int:
    import functools

    from tailor.eval.compare import compare_refs, describe_comparison
    from tailor.monitor.feedback import FeedbackStore
    from tailor.settings import get_settings

    feedback = functools.partial(FeedbackStore(get_settings().registry_url).labelled_texts, args.tenant)
    report = compare_refs(args.ref, args.b, args.file, feedback=feedback if args.feedback else None,
                          text_col=args.text_col, label_col=args.label_col, tenant=args.tenant)
    return _show(args, report, describe_comparison(report))


# ---- models -----------------------------------------------------------------------------------------------
def cmd_models_list(args) -> int:
    from tailor.registry.service import open_registry

    models = open_registry().store.list_models(None if args.all_tenants else args.tenant)
    if args.json:
        _emit_json({"models": [m.to_dict() for m in models]})
        return 0
    from rich.table import Table

    table = Table("tenant", "name", "latest", "aliases", "created")
    for m in models:
        aliases = ", ".join(f"@{a}→{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(m.tenant, m.name, str(m.latest_version or "-"), aliases, m.created_at.strftime("%Y-%m-%d %H:%M"))
    _console().print(table if models else "no models yet: run `tailor train FILE`")
    return 0


def cmd_models_show(args) -> int:
    from tailor.registry.service import open_registry

    registry = open_registry()
    version = registry.store.resolve(args.tenant, args.ref)
    if args.card:
        from tailor.models.card import version_card

        card = version_card(registry.store, version)
        if args.json:
            _emit_json({"model": version.ref, "card": card})
        else:
            print(card, end="")
        return 0
    info = version.to_dict() | {"artifact_dir": str(registry.artifact_location(version))}
    if args.json:
        _emit_json(info)
        return 0
    test = version.metrics.get("test", {})
    print(f"{version.ref}  task {version.task}  method {version.method}  base {version.base_model}")
    print(f"aliases: {', '.join(version.aliases) or '-'}   created {info['created_at']}")
    if version.task == "chat":
        print(f"test: loss {test.get('loss')} (base {test.get('base_loss')})  perplexity {test.get('perplexity')} "
              f"(base {test.get('base_perplexity')})")
    else:
        print(f"test: accuracy {test.get('accuracy')}  macro-F1 {test.get('macro_f1')}  "
              f"weighted-F1 {test.get('weighted_f1')}")
    dataset = (version.lineage.get("dataset") or {})
    print(f"data: {dataset.get('path')} (sha256 {str(dataset.get('sha256'))[:16]}…)  rows {version.lineage.get('rows')}")
    print(f"artifacts: {info['artifact_dir']}")
    return 0


def _model_name(ref: str) -> str:
    """The model ``ref`` names, refusing a version or an alias (``latest`` included): a verb on a whole model."""
    from tailor.errors import UsageError
    from tailor.registry.refs import parse_ref

    parsed = parse_ref(ref)
    if parsed.version is not None or "@" in ref:
        raise UsageError(f"give the model's name ({parsed.name}), not a version or an alias")
    return parsed.name


def cmd_models_alias(args) -> int:
    from tailor.cli_gate import gated_reason
    from tailor.registry.service import open_registry

    store = open_registry().store
    who = {"actor": _cli_actor(), "reason": args.reason}
    if args.unset:
        name = _model_name(args.ref)
        pointed = store.get_model(args.tenant, name).aliases.get(args.alias)
        store.delete_alias(args.tenant, name, args.alias, **who)
        return _show(args, {"model": None, "alias": f"{name}@{args.alias}", "was": f"{name}:{pointed}"},
                     f"removed {name}@{args.alias} (it pointed at {name}:{pointed})")
    version = store.resolve(args.tenant, args.ref)
    who["reason"] = gated_reason(args, store, version.name, version.version)
    store.set_alias(args.tenant, version.name, args.alias, version.version, **who)
    if args.json:
        _emit_json({"model": version.ref, "alias": f"{version.name}@{args.alias}"})
    else:
        print(f"{version.name}@{args.alias} → {version.ref}")
    return 0


def cmd_models_aliases(args) -> int:
    from tailor.registry.service import open_registry

    store = open_registry().store
    name = _model_name(args.ref)
    model = store.get_model(args.tenant, name)
    history = store.alias_history(args.tenant, name)
    aliases = [store.get_alias(args.tenant, name, alias) for alias in sorted(model.aliases)]
    lines = [f"aliases: {', '.join(_alias_text(a) for a in aliases) or 'none'}",
             "history:" if history else "history: none"]
    for event in history:
        lines.append(f"  {event.created_at:%Y-%m-%d %H:%M:%S}  {name}@{event.alias} {_event_text(event)}"
                     + (f"  by {event.actor}" if event.actor else "") + (f": {event.reason}" if event.reason else ""))
    return _show(args, {"model": name, "aliases": model.aliases,
                        "candidates": {a.alias: a.candidate.to_dict() for a in aliases if a.candidate},
                        "history": [e.to_dict() for e in history]}, "\n".join(lines))


def _cli_actor() -> str:
    """Who the CLI acts as in alias histories (and the audit log): ``cli:<os user>``."""
    from tailor.security.audit import cli_actor

    return cli_actor()


def _candidate_text(name: str, candidate) -> str:
    share = f" at {candidate.share:.0%}" if candidate.mode == "canary" else ""
    return f"{candidate.mode} {name}:{candidate.version}{share}"


def _alias_text(alias) -> str:
    """``tweets@prod → tweets:1`` with its candidate, if any."""
    text = f"{alias.name}@{alias.alias} → {alias.name}:{alias.version}"
    return text + (f" ({_candidate_text(alias.name, alias.candidate)})" if alias.candidate else "")


def _event_text(event) -> str:
    """What one alias history event did, in words."""
    target = f"{event.name}:{event.version}"
    if event.action in ("canary", "shadow"):
        return _candidate_text(event.name, event.candidate)
    return {"set": f"→ {target}", "unset": "removed", "version_deleted": "removed with its version",
            "abort": "canary/shadow stopped", "promote": f"promoted → {target}",
            "rollback": f"rolled back → {target}"}[event.action]


def _alias_ref(ref: str) -> tuple[str, str]:
    """``(name, alias)`` of ``NAME@ALIAS``. Raises UsageError for another kind of reference or alias ``latest``."""
    from tailor.errors import UsageError
    from tailor.registry.refs import parse_ref, validate_alias

    parsed = parse_ref(ref)
    if "@" not in ref:
        raise UsageError(f"give the alias to release through as NAME@ALIAS (e.g. {parsed.name}@prod), not {ref!r}")
    return parsed.name, validate_alias(ref.rsplit("@", 1)[1])


def cmd_models_release(args) -> int:
    """``tailor models canary|shadow|promote|rollback|abort NAME@ALIAS``: one registry call each; a canary and
    a promotion pass the tenant's release gate first (:mod:`tailor.cli_gate`)."""
    from tailor.cli_gate import gated_reason
    from tailor.registry.service import open_registry

    store = open_registry().store
    name, alias = _alias_ref(args.ref)
    who = {"actor": _cli_actor(), "reason": args.reason}
    verb = args.models_verb
    if verb in ("canary", "promote"):
        who["reason"] = gated_reason(args, store, name, args.version, alias)
    if verb in ("canary", "shadow"):
        changed = store.set_candidate(args.tenant, name, alias, args.version, verb,
                                      args.share if verb == "canary" else None, **who)
    elif verb == "promote":
        changed = store.promote(args.tenant, name, alias, args.version, **who)
    elif verb == "rollback":
        changed = store.rollback(args.tenant, name, alias, **who)
    else:
        changed = store.clear_candidate(args.tenant, name, alias, **who)
    return _show(args, {"model": name, "alias": alias, "version": changed.version,
                        "candidate": changed.candidate.to_dict() if changed.candidate else None},
                 _alias_text(changed))


def cmd_models_delete(args) -> int:
    from tailor.errors import UsageError
    from tailor.registry.refs import parse_ref
    from tailor.registry.service import open_registry

    registry = open_registry()
    ref = parse_ref(args.ref)
    if "@" in args.ref:
        raise UsageError(f"delete {ref.name!r} or one version ({ref.name}:N), not an alias")
    if ref.version is not None:
        deleted = [registry.delete_version(args.tenant, ref.name, ref.version)]
        text = f"deleted {deleted[0].ref}"
    else:
        deleted = registry.delete_model(args.tenant, ref.name)
        versions = ", ".join(str(v.version) for v in deleted)
        text = f"deleted model {ref.name} with {'versions ' + versions if deleted else 'no versions'}"
    return _show(args, {"model": ref.name, "deleted": [v.ref for v in deleted],
                        "whole_model": ref.version is None}, text)


def cmd_models_export(args) -> int:
    from tailor.models.export import export_version

    result = export_version(args.ref, args.format, args.out, tenant=args.tenant)
    if args.json:
        _emit_json(result)
    else:
        print(f"exported {result['model']} as {args.format} to {result['path']}: {', '.join(result['files'])}")
    return 0


def cmd_models_pull(args) -> int:
    from tailor.catalog import CATALOG
    from tailor.errors import UsageError
    from tailor.train.progress import ConsoleReporter

    if args.base_id not in CATALOG:
        raise UsageError(f"unknown base model {args.base_id!r}; the catalog has: {', '.join(CATALOG)}")
    path = CATALOG[args.base_id].locate(progress=ConsoleReporter(), verify=args.verify)
    if args.json:
        _emit_json({"id": args.base_id, "path": str(path)})
    else:
        print(f"{args.base_id} ready at {path}")
    return 0


def cmd_models_catalog(args) -> int:
    from tailor.catalog import CATALOG, adapted_name
    from tailor.train.adapt import list_adapted

    rows = [{"id": b.id, "task": b.task, "description": b.description} for b in CATALOG.values()]
    adapted = [{"id": adapted_name(args.tenant, r["name"]), "task": "classify", "parent": r["parent"],
                "objective": r["objective"], "corpus_texts": r["corpus"]["texts"],
                "description": f"{r['parent']} adapted with {r['objective']} on {r['corpus']['texts']:,} texts"}
               for r in list_adapted(args.tenant)]
    if args.json:
        _emit_json({"base_models": rows, "adapted_bases": adapted})
    else:
        width = max(len(row["id"]) for row in rows + adapted) + 2
        for row in rows + adapted:
            print(f"{row['id']:<{width}}{row['task']:<10}{row['description']}")
    return 0


# ---- chat -------------------------------------------------------------------------------------------------
def cmd_chat(args) -> int:
    from tailor.errors import UsageError
    from tailor.models.genai import load_fast_chat_model
    from tailor.train.progress import ConsoleReporter

    if args.json and args.message is None:
        raise UsageError("--json answers one question: give it with -m/--message")
    chat = load_fast_chat_model(args.ref, tenant=args.tenant, progress=ConsoleReporter())
    history = [{"role": "system", "content": args.system}] if args.system else []
    sampling = dict(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    if args.json:
        reply = chat.generate(history + [{"role": "user", "content": args.message}], **sampling)
        _emit_json({"model": chat.name, "message": args.message, "reply": reply.text,
                    "finish_reason": reply.finish_reason,
                    "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                              "total_tokens": reply.total_tokens}})
        return 0
    interactive = args.message is None and sys.stdin.isatty()
    if interactive:
        print(f"chatting with {chat.name} — /reset forgets the conversation, /exit or Ctrl-D ends it", file=sys.stderr)
    turns = [args.message] if args.message is not None else _chat_inputs(interactive)
    for text in turns:
        if text.strip() in ("/exit", "/quit"):
            break
        if text.strip() == "/reset":
            del history[1 if args.system else 0:]
            continue
        history.append({"role": "user", "content": text})
        answer, usage = [], {}
        for piece in chat.stream(history, usage=usage, **sampling):
            answer.append(piece)
            print(piece, end="", flush=True)
        print()
        if usage["finish_reason"] == "length":  # cut, not finished: say so where it does not mix with the answer
            note = f"[stopped at --max-tokens {args.max_tokens}]"
            print(f"\x1b[2m{note}\x1b[0m" if sys.stderr.isatty() else note, file=sys.stderr)
        history.append({"role": "assistant", "content": "".join(answer)})
    return 0


def _chat_inputs(interactive: bool):
    """User turns: typed at a ``you>`` prompt, or one per line of piped standard input."""
    while True:
        try:
            line = input("you> ") if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not interactive and not line:
            return
        if line.strip():
            yield line.rstrip("\n")


# ---- service ----------------------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    import logging

    from tailor.errors import UsageError
    from tailor.security.hardening import require_safe_settings, settings_from_environment, tls_files

    try:
        import uvicorn

        from tailor.jobs.executor import LocalExecutor
        from tailor.serve.app import create_app
    except ImportError as exc:
        raise UsageError(f"the server needs the serve extra: pip install 'tailor[serve]' ({exc})") from None
    settings = settings_from_environment()
    tls = tls_files(args.ssl_certfile, args.ssl_keyfile)
    require_safe_settings(settings, host=args.host, tls=tls is not None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.workers:
        settings = settings.model_copy(update={"workers": args.workers})
    executor = None if args.no_workers else LocalExecutor(settings)
    print(f"Tailor console on {'https' if tls else 'http'}://{args.host}:{args.port}/console (sign in with an API "
          f"key; API docs at /docs), data in {settings.home}, {0 if executor is None else settings.workers} job "
          "worker(s)", file=sys.stderr)
    certfile, keyfile = tls or (None, None)
    proxies = settings.forwarded_allow_ips  # uvicorn then reads X-Forwarded-For from these only, as the audit log does
    uvicorn.run(create_app(settings, executor), host=args.host, port=args.port, log_level="info",
                ssl_certfile=certfile, ssl_keyfile=keyfile, proxy_headers=bool(proxies),
                forwarded_allow_ips=proxies or None)
    return 0


def _tenant_store():
    from tailor.security.keys import TenantStore
    from tailor.settings import get_settings

    return TenantStore(get_settings().registry_url)


def cmd_tenants_create(args) -> int:
    key, secret = _tenant_store().create_tenant(args.name)
    note_audit(args, key_id=key.id)
    return _show(args, {"tenant": args.name, "key": {**key.to_dict(), "secret": secret}},
                 f"tenant {args.name} created\nAPI key (shown once, keep it safe): {secret}\n"
                 f"key id: {key.id}, scopes: {', '.join(key.scopes)}")


def cmd_tenants_list(args) -> int:
    tenants = _tenant_store().list_tenants()
    text = "\n".join(f"{t['name']:<24}{t['active_keys']} active key(s)  created {t['created_at'][:19]}"
                     for t in tenants) or "no tenants yet: tailor tenants create NAME"
    return _show(args, {"tenants": tenants}, text)


def cmd_tenants_retention(args) -> int:
    from tailor.settings import get_settings

    store = _tenant_store()
    if args.days is not None or args.rows is not None or args.default:
        days, rows = (None, None) if args.default else store.retention(args.name)
        store.set_retention(args.name, args.days if args.days is not None else days,
                            args.rows if args.rows is not None else rows)
    store.require_tenant(args.name)
    days, rows = store.retention(args.name)
    settings = get_settings()
    shown = {"tenant": args.name, "days": days or settings.retention_days, "rows": rows or settings.retention_rows,
             "own": {"days": days, "rows": rows}}
    return _show(args, shown, f"tenant {args.name} keeps its prediction records {shown['days']} day(s), at most "
                              f"{shown['rows']:,} rows" + ("" if days or rows else " (the server's defaults)"))


def cmd_keys_create(args) -> int:
    key, secret = _tenant_store().create_key(args.tenant, args.name, args.scopes, args.expires_days)
    note_audit(args, key_id=key.id)
    return _show(args, {**key.to_dict(), "secret": secret},
                 f"API key (shown once, keep it safe): {secret}\nkey id: {key.id}, scopes: {', '.join(key.scopes)}"
                 + (f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else ""))


def cmd_keys_list(args) -> int:
    keys = _tenant_store().list_keys(args.tenant)
    text = "\n".join(f"{k.id:<22}{k.prefix}...  {','.join(k.scopes):<24}{k.name:<16}"
                     f"{'revoked' if k.revoked_at else 'active'}" for k in keys)
    return _show(args, {"keys": [k.to_dict() for k in keys]}, text)


def cmd_keys_revoke(args) -> int:
    key = _tenant_store().revoke_key(args.key_id)
    note_audit(args, tenant=key.tenant)
    return _show(args, key.to_dict(), f"revoked {key.id} ({key.prefix}...) of tenant {key.tenant}")


def cmd_jobs_list(args) -> int:
    from tailor.jobs.store import JobStore
    from tailor.settings import get_settings

    jobs, _ = JobStore(get_settings().registry_url).list(None if args.all_tenants else args.tenant, limit=args.limit)
    rows = [j.to_openai() for j in jobs]
    text = "\n".join(f"{j['id']:<32}{j['organization_id']:<14}{j['status']:<12}{j['model']:<24}"
                     f"{j['fine_tuned_model'] or ''}" for j in rows) or "no jobs"
    return _show(args, {"jobs": rows}, text)


def _find_job(job_id: str):
    """``(store, job)`` for a job of any tenant: the operator knows a job's id, not always its tenant.

    Raises:
        NotFoundError: no tenant has a job ``job_id``.
    """
    from tailor.errors import NotFoundError
    from tailor.jobs.store import JobStore
    from tailor.settings import get_settings

    store = JobStore(get_settings().registry_url)
    for tenant in _tenant_store().list_tenants():
        try:
            return store, store.get(tenant["name"], job_id)
        except NotFoundError:
            continue
    raise NotFoundError(f"fine-tuning job {job_id!r} not found")


def _job_text(job: dict) -> str:
    from datetime import datetime

    def moment(ts):
        return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"

    lines = [f"{job['id']}  {job['status']}  tenant {job['organization_id']}  {job['task']} on {job['model']}",
             f"created {moment(job['created_at'])}  finished {moment(job['finished_at'])}",
             "hyperparameters: " + ", ".join(f"{k} {v}" for k, v in job["hyperparameters"].items()),
             f"training file {job['training_file'] or '-'}  validation file {job['validation_file'] or '-'}"]
    if job["fine_tuned_model"]:
        lines.append(f"fine-tuned model: {job['fine_tuned_model']}")
    if job["error"]:
        lines.append(f"error: {job['error']['message']}")
    return "\n".join(lines)


def cmd_jobs_show(args) -> int:
    _, job = _find_job(args.job_id)
    data = job.to_openai()
    return _show(args, data, _job_text(data))


def cmd_jobs_cancel(args) -> int:
    store, job = _find_job(args.job_id)
    note_audit(args, tenant=job.tenant)
    data = store.cancel(job.tenant, job.id).to_openai()
    note = "; it stops at its worker's next heartbeat" if job.status == "running" else ""
    return _show(args, data, f"cancelled {job.id} (it was {job.status}){note}")


def cmd_jobs_events(args) -> int:
    from tailor.errors import UsageError

    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {args.limit})")
    store, job = _find_job(args.job_id)
    events, has_more = store.events(job.tenant, job.id, limit=args.limit)
    events.reverse()  # the store pages newest first; a terminal reads oldest first
    lines = [f"{e.created_at.astimezone():%Y-%m-%d %H:%M:%S}  {e.level:<5}  {e.message}" for e in events]
    if has_more:
        lines.insert(0, f"(older events left out: --limit {args.limit})")
    return _show(args, {"job": job.id, "events": [e.to_openai() for e in events], "has_more": has_more},
                 "\n".join(lines) or "no events")


def _tenant_of_fine_tuned_id(args) -> None:
    """``ft:<base>:<tenant>:<suffix>:<job>`` names its tenant: use it unless --tenant was given."""
    ref = getattr(args, "ref", None)
    if ref and ref.startswith("ft:") and getattr(args, "tenant", None) is None and ref.count(":") >= 4:
        args.tenant = ref.split(":")[2]
    if hasattr(args, "tenant") and args.tenant is None:
        args.tenant = "default"


# ---- parser -----------------------------------------------------------------------------------------------
EPILOG = """examples:
  tailor data check loans.csv                           check, clean and report on a labelled file
  tailor train loans.csv --name credit-risk             fine-tune, evaluate, register credit-risk:1
  tailor predict credit-risk@latest "late fee again"    classify texts with the latest version

Models, data, the registry database and caches live under TAILOR_HOME (default ~/.tailor).
`tailor VERB --help` explains each verb."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailor", description="Customize pretrained models on your own data, "
                                                                "offline: check data, fine-tune, evaluate, register, predict.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tailor {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def common(p, tenant=True):
        p.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
        if tenant:
            p.add_argument("--tenant", help="the tenant that owns the models (default: default, or the tenant "
                                            "named in an ft: model id)")

    def columns(p):
        p.add_argument("--text-col", help="column (or JSON key) with the text; guessed when obvious")
        p.add_argument("--label-col", help="column (or JSON key) with the label; guessed when obvious")

    data = verbs.add_parser("data", help="inspect data").add_subparsers(dest="data_verb", metavar="VERB", required=True)
    check = data.add_parser("check", help="validate, clean and report on a labelled file")
    check.add_argument("file")
    columns(check)
    check.add_argument("--eval-file", help="a held-out file: checks train/eval leakage")
    check.add_argument("--base", default="auto", help="base model whose tokenizer counts tokens (default: auto)")
    check.add_argument("--max-length", type=int, default=128, help="token limit to report truncation against")
    check.add_argument("--no-tokens", action="store_true", help="skip token counts (no tokenizer load)")
    check.add_argument("--report", metavar="HTML", help="also write the report as an HTML page")
    check.add_argument("--redact-pii", action="store_true", help="replace e-mails, phones, card, ID and IBAN numbers "
                                                                 "by [EMAIL], [PHONE], ... first (as training would)")
    common(check, tenant=False)
    check.set_defaults(func=cmd_data_check)

    train = verbs.add_parser("train", help="fine-tune, evaluate and register a model")
    train.add_argument("file")
    train.add_argument("--task", default="classify", choices=["classify", "chat"],
                       help="classify (text classification, CSV/TSV/JSONL) or chat (LoRA fine-tuning of a chat "
                            "model on JSONL conversations: OpenAI messages or instruction/input/output)")
    columns(train)
    train.add_argument("--eval-file", help="held-out labelled file for the test metrics (else a test split)")
    train.add_argument("--base", help="base model: auto (default), a catalog id (minilm-l6, me5-small; with --task "
                                      "chat: smollm2-135m-instruct, the default) or a local Hugging Face directory")
    train.add_argument("--method", choices=["auto", "full", "lora", "head", "contrastive"],
                       help="default auto (contrastive: the encoder tuned on pairs of the few labels, then a head)")
    train.add_argument("--name", help="registry name (default: from the file name)")
    train.add_argument("--preset", default="default", help="config preset: default, fast, quality (--task chat: "
                                                            "default, fast)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", type=float, help="peak learning rate (full fine-tuning)")
    train.add_argument("--full-pooling", choices=["auto", "pooler", "mean"],
                       help="what method full's head reads: the [CLS] pooler, the mean-pooled embedding (head "
                            "fitted first, then everything trains), or auto (the base's own: mean for me5-small)")
    train.add_argument("--augment", type=int, metavar="N", help="add N edited copies of each labelled row (words "
                                                                "swapped, deleted, repeated or cut); default 0")
    train.add_argument("--label-prior", type=float, metavar="C",
                       help="strength of the label-name prior on a new head (it starts as the zero-shot classifier "
                            "of the label names, pulled toward it by C / rows); default 2, 0 off")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--max-length", type=int, help="tokens per text (--task chat: per conversation, default "
                                                      "1024 capped by the model's context; longer ones are "
                                                      "truncated, or dropped when no answer token remains)")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto, cpu, cuda")
    train.add_argument("--search", type=int, default=0, metavar="N", help="run N hyperparameter-search trials")
    train.add_argument("--time-budget", type=parse_duration, metavar="DURATION", help="e.g. 10m: stop in time")
    train.add_argument("--resume", action="store_true", help="resume the same job from its last checkpoint")
    train.add_argument("--strict", action="store_true", help="--task chat: fail on conversations over --max-length "
                                                             "(their lines named) instead of truncating them")
    train.add_argument("--redact-pii", action="store_true", help="replace e-mails, phones, card, ID and IBAN numbers "
                                                                 "by [EMAIL], [PHONE], [CARD], [ID], [IBAN] before "
                                                                 "training (the data report counts them)")
    train.add_argument("--new-labels", action="store_true", help="register a new version even if its labels "
                                                                 "differ from the model's latest version's")
    _add_unlabeled(train)
    common(train)
    train.set_defaults(func=cmd_train)

    rt = verbs.add_parser("retrain", help="continue a registered classifier on its feedback labels, a new file, "
                                          "and a replay of its training rows; registers its next version")
    rt.add_argument("ref", metavar="MODEL", help="name, name:VERSION, name@ALIAS or ft: id to continue from")
    rt.add_argument("--file", help="labelled file of new rows (optional when feedback labels exist)")
    columns(rt)
    rt.add_argument("--eval-file", help="held-out labelled file for the test metrics (else a test split)")
    rt.add_argument("--replay", type=float, metavar="SHARE",
                    help="old training rows to mix in, as a share of the new rows (default 4.0; 0: none)")
    rt.add_argument("--no-feedback", action="store_true", help="leave out the model's feedback labels")
    rt.add_argument("--new-labels", action="store_true", help="accept labels the model lacks (new head rows)")
    rt.add_argument("--name", help="register under this name (default: the next version of MODEL's name)")
    rt.add_argument("--preset", default="default", help="config preset: default, fast, quality")
    rt.add_argument("--epochs", type=int)
    rt.add_argument("--lr", type=float, help="peak learning rate (full fine-tuning)")
    rt.add_argument("--batch-size", type=int)
    rt.add_argument("--seed", type=int)
    rt.add_argument("--device", help="auto, cpu, cuda")
    _add_unlabeled(rt)
    common(rt)
    rt.set_defaults(func=cmd_retrain)

    ev = verbs.add_parser("eval", help="evaluate a registered model on a labelled file")
    ev.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    ev.add_argument("file")
    columns(ev)
    ev.add_argument("--report", metavar="HTML", help="write an HTML report")
    ev.add_argument("--slice-col", metavar="COL", help="score each slice of this column (region, gender, ...)")
    ev.add_argument("--positive-label", metavar="LABEL",
                    help="the positive class of a binary task (default: the test labels' minority class)")
    ev.add_argument("--counterfactual", action="store_true",
                    help="swap protected terms (he/she, names, ethnic, regional) and count changed predictions")
    ev.add_argument("--terms", metavar="FILE", help="more term pairs for --counterfactual (JSON: "
                                                    '{"group": [["term", "swap"], ...]})')
    common(ev)
    ev.set_defaults(func=cmd_eval)

    pr = verbs.add_parser("predict", help="classify texts with a registered model")
    pr.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    pr.add_argument("texts", nargs="*", help="texts to classify")
    pr.add_argument("--file", help="a file with one text per line")
    pr.add_argument("--abstain", action="store_true",
                    help="print (abstain) for texts below the version's suggested abstain threshold")
    pr.add_argument("--abstain-threshold", type=float, metavar="P",
                    help="abstain below this top probability (0..1) instead of the suggested threshold")
    pr.add_argument("--explain", action="store_true",
                    help="weigh each word: how much the predicted label's probability drops without it")
    pr.add_argument("--all-labels", action="store_true", help="with --explain: weigh each word for every label")
    common(pr)
    pr.set_defaults(func=cmd_predict)

    from tailor.cli_adapt import add_parsers as add_adapt_parsers
    from tailor.cli_zero_shot import add_parsers as add_zero_shot_parsers
    from tailor.cli_gate import add_override, add_parsers as add_gate_parsers
    from tailor.cli_audit import add_parsers as add_audit_parsers
    from tailor.cli_monitor import add_parsers as add_monitor_parsers
    from tailor.cli_quotas import add_parsers as add_quota_parsers
    from tailor.cli_encryption import add_parsers as add_encryption_parsers

    add_monitor_parsers(verbs, common)
    add_audit_parsers(verbs, common)
    add_adapt_parsers(verbs, common)
    add_zero_shot_parsers(verbs, common)
    add_gate_parsers(verbs, common)

    co = verbs.add_parser("compare", help="compare two classifier versions on the same labelled rows (a file and "
                                          "the feedback) with paired significance tests, before promoting one")
    co.add_argument("ref", metavar="A", help="the version served now, e.g. sentiment@prod (an ft: id names the "
                                             "tenant, as for other verbs)")
    co.add_argument("b", metavar="B", help="the candidate, e.g. sentiment:3")
    co.add_argument("file", metavar="FILE", nargs="?", help="a labelled CSV/TSV/JSONL file (read as tailor eval does)")
    columns(co)
    co.add_argument("--feedback", action=argparse.BooleanOptionalAction, default=True,
                    help="also compare on the served texts that were stored and given a feedback label (default on)")
    common(co)
    co.set_defaults(func=cmd_compare)

    models = verbs.add_parser("models", help="the model registry").add_subparsers(dest="models_verb", metavar="VERB",
                                                                                  required=True)
    ls = models.add_parser("list", help="registered models")
    ls.add_argument("--all-tenants", action="store_true", help="every tenant's models (operator view)")
    common(ls)
    ls.set_defaults(func=cmd_models_list)
    show = models.add_parser("show", help="one version: metrics, lineage, artifacts")
    show.add_argument("ref")
    show.add_argument("--card", action="store_true", help="print its model card instead (Hugging Face's format: "
                                                          "YAML metadata, then markdown)")
    common(show)
    show.set_defaults(func=cmd_models_show)
    alias = models.add_parser("alias", help="point an alias (e.g. production) at a version, or remove it")
    alias.add_argument("ref", help="the version: name:VERSION, name@ALIAS or name (its latest); with --unset, "
                                   "the model's name")
    alias.add_argument("alias")
    alias.add_argument("--unset", action="store_true", help="remove the alias instead")
    alias.add_argument("--reason", help="why (kept in the alias history with who and when)")
    add_override(alias)
    common(alias)
    alias.set_defaults(func=cmd_models_alias)
    aliases = models.add_parser("aliases", help="a model's aliases now and their history (set, moved, removed)")
    aliases.add_argument("ref", metavar="NAME")
    common(aliases)
    aliases.set_defaults(func=cmd_models_aliases)
    release_verbs = {
        "canary": "send a share of NAME@ALIAS's requests to another version (sticky by the request's user)",
        "shadow": "run another classifier version on a copy of NAME@ALIAS's requests (recorded, never returned)",
        "promote": "move NAME@ALIAS to its canary or shadow candidate (or --version) and end the release",
        "rollback": "move NAME@ALIAS back to the version it pointed at before its last move",
        "abort": "stop NAME@ALIAS's canary or shadow; the alias keeps its version"}
    for verb, help_text in release_verbs.items():
        release = models.add_parser(verb, help=help_text)
        release.add_argument("ref", metavar="NAME@ALIAS")
        if verb in ("canary", "shadow"):
            release.add_argument("version", type=int, help="the candidate version's number")
        if verb == "canary":
            release.add_argument("--share", type=float, required=True,
                                 help="the fraction of requests the candidate answers, between 0 and 1 (e.g. 0.1)")
        if verb == "promote":
            release.add_argument("--version", type=int, help="promote this version instead of the candidate")
        release.add_argument("--reason", help="why (kept in the alias history with who and when)")
        if verb in ("canary", "promote"):
            add_override(release)
        common(release)
        release.set_defaults(func=cmd_models_release)
    delete = models.add_parser("delete", help="delete one version (name:VERSION) or a whole model (name), with "
                                              "its files; asks no question")
    delete.add_argument("ref")
    common(delete)
    delete.set_defaults(func=cmd_models_delete)
    export = models.add_parser("export", help="write a version as a Hugging Face dir, a PEFT adapter, ONNX "
                                                       "(classifiers) or GGUF (chat models)")
    export.add_argument("ref")
    export.add_argument("--format", required=True, choices=["hf", "peft", "onnx", "gguf"])
    export.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    common(export)
    export.set_defaults(func=cmd_models_export)
    pull = models.add_parser("pull", help="prepare a catalog base model offline (me5-small: convert and verify)")
    pull.add_argument("base_id", metavar="ID")
    pull.add_argument("--verify", action="store_true", help="re-hash an existing conversion's files")
    common(pull, tenant=False)
    pull.set_defaults(func=cmd_models_pull)
    catalog = models.add_parser("catalog", help="base models available to fine-tune: the catalog's, then the tenant's "
                                                "adapted bases (tailor adapt)")
    common(catalog)
    catalog.set_defaults(func=cmd_models_catalog)

    chat = verbs.add_parser("chat", help="chat in the terminal with a chat model (streams the answers)")
    chat.add_argument("ref", metavar="model", help="smollm2-135m-instruct, a fine-tuned chat model (name, name:N, "
                                                   "name@alias, or an ft: id, which names its tenant) or a directory")
    chat.add_argument("-m", "--message", help="ask one question, print the answer and exit (with --json: one JSON "
                                              "object with the reply, finish_reason and token usage)")
    chat.add_argument("--system", help="a system prompt (default: the one the model was fine-tuned with, if any)")
    chat.add_argument("--max-tokens", type=int, default=256, help="longest answer in tokens; a reply cut there "
                                                                  "says so (finish_reason length)")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default) answers greedily")
    chat.add_argument("--seed", type=int)
    common(chat)
    chat.set_defaults(func=cmd_chat)

    serve = verbs.add_parser("serve", help="run the REST API (OpenAI-compatible) and the job workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, help="job worker processes (default: TAILOR_WORKERS or 1)")
    serve.add_argument("--no-workers", action="store_true", help="serve the API only; run no jobs here")
    serve.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate (and --ssl-keyfile)")
    serve.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    serve.set_defaults(func=cmd_serve)

    tenants = verbs.add_parser("tenants", help="the service's tenants").add_subparsers(
        dest="tenants_verb", metavar="VERB", required=True)
    tc = tenants.add_parser("create", help="create a tenant and print its first API key (all scopes) once")
    tc.add_argument("name")
    common(tc, tenant=False)
    tc.set_defaults(func=cmd_tenants_create)
    tl = tenants.add_parser("list", help="every tenant")
    common(tl, tenant=False)
    tl.set_defaults(func=cmd_tenants_list)
    tr = tenants.add_parser("retention", help="how long and how many of a tenant's prediction records are kept "
                                              "(shows them; --days / --rows set them)")
    tr.add_argument("name")
    tr.add_argument("--days", type=int, help="delete records older than this many days")
    tr.add_argument("--rows", type=int, help="keep at most this many of the newest records")
    tr.add_argument("--default", action="store_true", help="back to the server's defaults (TAILOR_RETENTION_DAYS, "
                                                           "TAILOR_RETENTION_ROWS) before --days / --rows")
    common(tr, tenant=False)
    tr.set_defaults(func=cmd_tenants_retention)
    add_quota_parsers(tenants, common)

    keys = verbs.add_parser("keys", help="a tenant's API keys").add_subparsers(dest="keys_verb", metavar="VERB",
                                                                               required=True)
    kc = keys.add_parser("create", help="a new API key, printed once")
    kc.add_argument("tenant")
    kc.add_argument("--name", default="", help="what the key is for")
    kc.add_argument("--scopes", default="read", help="comma-separated: read, train, deploy, admin (default: read)")
    kc.add_argument("--expires-days", type=float, metavar="DAYS",
                    help="the key stops working after this many days (default: until revoked)")
    common(kc, tenant=False)
    kc.set_defaults(func=cmd_keys_create)
    kl = keys.add_parser("list", help="a tenant's keys (never their secrets)")
    kl.add_argument("tenant")
    common(kl, tenant=False)
    kl.set_defaults(func=cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key at once")
    kr.add_argument("key_id")
    common(kr, tenant=False)
    kr.set_defaults(func=cmd_keys_revoke)
    add_encryption_parsers(tenants, keys, common)

    jobs = verbs.add_parser("jobs", help="fine-tuning jobs of the service").add_subparsers(
        dest="jobs_verb", metavar="VERB", required=True)
    jl = jobs.add_parser("list", help="jobs, newest first")
    jl.add_argument("--all-tenants", action="store_true", help="every tenant's jobs (operator view)")
    jl.add_argument("--limit", type=int, default=20)
    common(jl)
    jl.set_defaults(func=cmd_jobs_list)
    for verb, func, help_text in (("show", cmd_jobs_show, "one job of any tenant: status, hyperparameters, result"),
                                  ("cancel", cmd_jobs_cancel, "cancel a job that has not finished"),
                                  ("events", cmd_jobs_events, "a job's events, oldest first")):
        jp = jobs.add_parser(verb, help=help_text)
        jp.add_argument("job_id", metavar="ID", help="a job id (ftjob-...; see tailor jobs list --all-tenants)")
        if verb == "events":
            jp.add_argument("--limit", type=int, default=50, help="the newest N events (default 50)")
        common(jp, tenant=False)
        jp.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tailor`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "texts", None), list) and not any(e.startswith("-") for e in extra):
        args.texts += extra  # texts after an option (tailor predict REF --abstain "text"): argparse leaves them
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _tenant_of_fine_tuned_id(args)
    from tailor.errors import TailorError

    try:
        return run_audited(args)
    except TailorError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
