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
    from tailor.runtime import setup_torch
    from tailor.settings import get_settings
    from tailor.train.progress import ConsoleReporter

    settings = get_settings()
    raw = read_dataset(args.file, args.text_col, args.label_col, max_bytes=settings.max_file_bytes)
    eval_ds = None
    if args.eval_file:
        eval_ds = read_dataset(args.eval_file, args.text_col or raw.source.text_col,
                               args.label_col or raw.source.label_col, max_bytes=settings.max_file_bytes)
    cleaned = clean_dataset(raw, max_chars=settings.max_text_chars, eval_ds=eval_ds)
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
        return cmd_train_chat(args)
    overrides = {"base": args.base, "method": args.method, "epochs": args.epochs, "lr": args.lr,
                 "batch_size": args.batch_size, "max_length": args.max_length, "seed": args.seed,
                 "time_budget_s": args.time_budget, "device": args.device}
    result = run_classification_job(
        args.file, eval_file=args.eval_file, text_col=args.text_col, label_col=args.label_col, name=args.name,
        preset=args.preset, search=args.search, resume=args.resume, reporter=ConsoleReporter(),
        **{k: v for k, v in overrides.items() if v is not None})
    summary = result.summary()
    if args.json:
        _emit_json(summary)
    else:
        from tailor.eval.report import format_eval_text

        print(format_eval_text({"model": summary["model"], "data": args.eval_file or "test split",
                                "metrics": result.metrics, "baseline": result.baseline,
                                "base_model": summary["base_model"]}))
        print(f"\nregistered {summary['model']}  (method {summary['method']}, {summary['timings']['total_s']}s)")
    return 0


def cmd_train_chat(args) -> int:
    from tailor.errors import UsageError
    from tailor.eval.generation import format_chat_eval_text
    from tailor.train.chat_job import run_chat_job
    from tailor.train.progress import ConsoleReporter

    unsupported = [flag for flag, value in (("--method", args.method), ("--search", args.search),
                                            ("--text-col", args.text_col), ("--label-col", args.label_col)) if value]
    if unsupported:
        raise UsageError(f"--task chat does not use {', '.join(unsupported)} (classification options)")
    overrides = {"base": args.base, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "max_length": args.max_length, "seed": args.seed, "time_budget_s": args.time_budget,
                 "device": args.device}
    result = run_chat_job(args.file, eval_file=args.eval_file, name=args.name, tenant=args.tenant,
                          preset=args.preset, resume=args.resume, reporter=ConsoleReporter(),
                          **{k: v for k, v in overrides.items() if v is not None})
    summary = result.summary()
    if args.json:
        _emit_json(summary)
    else:
        print(format_chat_eval_text(result.evaluation))
        print(f"\nregistered {summary['model']}  (LoRA on {summary['base_model']}, {summary['timings']['total_s']}s)")
    return 0


# ---- eval / predict ---------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from tailor.eval.report import format_eval_text
    from tailor.eval.run import evaluate_model

    evaluation = evaluate_model(args.ref, args.file, text_col=args.text_col, label_col=args.label_col,
                                tenant=args.tenant, report_path=args.report)
    return _show(args, evaluation, format_eval_text(evaluation))


def _read_lines(path: str) -> list[str]:
    from tailor.errors import DataError

    try:
        with open(path, encoding="utf-8-sig") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def cmd_predict(args) -> int:
    from tailor.errors import UsageError
    from tailor.registry.service import load_classifier

    texts = list(args.texts) + (_read_lines(args.file) if args.file else [])
    if not texts:
        raise UsageError("give texts to classify, or --file with one text per line")
    classifier = load_classifier(args.ref, tenant=args.tenant)
    predictions = classifier.predict(texts)
    if args.json:
        _emit_json({"model": classifier.version.ref, "predictions": [
            {"text": t, "label": p.label, "score": p.score, "scores": p.scores} for t, p in zip(texts, predictions)]})
    else:
        for text, p in zip(texts, predictions):
            print(f"{p.label}\t{p.score:.3f}\t{text}")
    return 0


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
    info = version.to_dict() | {"artifact_dir": str(registry.artifact_dir(version))}
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


def cmd_models_alias(args) -> int:
    from tailor.registry.service import open_registry

    store = open_registry().store
    version = store.resolve(args.tenant, args.ref)
    store.set_alias(args.tenant, version.name, args.alias, version.version)
    if args.json:
        _emit_json({"model": version.ref, "alias": f"{version.name}@{args.alias}"})
    else:
        print(f"{version.name}@{args.alias} → {version.ref}")
    return 0


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
    from tailor.catalog import CATALOG

    rows = [{"id": b.id, "task": b.task, "description": b.description} for b in CATALOG.values()]
    if args.json:
        _emit_json({"base_models": rows})
    else:
        width = max(len(row["id"]) for row in rows) + 2
        for row in rows:
            print(f"{row['id']:<{width}}{row['task']:<10}{row['description']}")
    return 0


# ---- chat -------------------------------------------------------------------------------------------------
def cmd_chat(args) -> int:
    from tailor.models.genai import load_fast_chat_model
    from tailor.train.progress import ConsoleReporter

    chat = load_fast_chat_model(args.model, tenant=args.tenant, progress=ConsoleReporter())
    history = [{"role": "system", "content": args.system}] if args.system else []
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
        answer = []
        for piece in chat.stream(history, max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed):
            answer.append(piece)
            print(piece, end="", flush=True)
        print()
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
    from tailor.settings import get_settings

    try:
        import uvicorn

        from tailor.jobs.executor import LocalExecutor
        from tailor.serve.app import create_app
    except ImportError as exc:
        raise UsageError(f"the server needs the serve extra: pip install 'tailor[serve]' ({exc})") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    if args.workers:
        settings = settings.model_copy(update={"workers": args.workers})
    executor = None if args.no_workers else LocalExecutor(settings)
    print(f"Tailor API on http://{args.host}:{args.port} (docs at /docs), data in {settings.home}, "
          f"{0 if executor is None else settings.workers} job worker(s)", file=sys.stderr)
    uvicorn.run(create_app(settings, executor), host=args.host, port=args.port, log_level="info")
    return 0


def _tenant_store():
    from tailor.security.keys import TenantStore
    from tailor.settings import get_settings

    return TenantStore(get_settings().registry_url)


def cmd_tenants_create(args) -> int:
    key, secret = _tenant_store().create_tenant(args.name)
    return _show(args, {"tenant": args.name, "key": {**key.to_dict(), "secret": secret}},
                 f"tenant {args.name} created\nAPI key (shown once, keep it safe): {secret}\n"
                 f"key id: {key.id}, scopes: {', '.join(key.scopes)}")


def cmd_tenants_list(args) -> int:
    tenants = _tenant_store().list_tenants()
    text = "\n".join(f"{t['name']:<24}{t['active_keys']} active key(s)  created {t['created_at'][:19]}"
                     for t in tenants) or "no tenants yet: tailor tenants create NAME"
    return _show(args, {"tenants": tenants}, text)


def cmd_keys_create(args) -> int:
    key, secret = _tenant_store().create_key(args.tenant, args.name, args.scopes)
    return _show(args, {**key.to_dict(), "secret": secret},
                 f"API key (shown once, keep it safe): {secret}\nkey id: {key.id}, scopes: {', '.join(key.scopes)}")


def cmd_keys_list(args) -> int:
    keys = _tenant_store().list_keys(args.tenant)
    text = "\n".join(f"{k.id:<22}{k.prefix}...  {','.join(k.scopes):<24}{k.name:<16}"
                     f"{'revoked' if k.revoked_at else 'active'}" for k in keys)
    return _show(args, {"keys": [k.to_dict() for k in keys]}, text)


def cmd_keys_revoke(args) -> int:
    key = _tenant_store().revoke_key(args.key_id)
    return _show(args, key.to_dict(), f"revoked {key.id} ({key.prefix}...) of tenant {key.tenant}")


def cmd_jobs_list(args) -> int:
    from tailor.jobs.store import JobStore
    from tailor.settings import get_settings

    jobs, _ = JobStore(get_settings().registry_url).list(None if args.all_tenants else args.tenant, limit=args.limit)
    rows = [j.to_openai() for j in jobs]
    text = "\n".join(f"{j['id']:<32}{j['organization_id']:<14}{j['status']:<12}{j['model']:<24}"
                     f"{j['fine_tuned_model'] or ''}" for j in rows) or "no jobs"
    return _show(args, {"jobs": rows}, text)


def _tenant_of_fine_tuned_id(args) -> None:
    """``ft:<base>:<tenant>:<suffix>:<job>`` names its tenant: use it unless --tenant was given."""
    ref = getattr(args, "ref", None)
    if ref and ref.startswith("ft:") and getattr(args, "tenant", None) is None and ref.count(":") >= 4:
        args.tenant = ref.split(":")[2]
    if hasattr(args, "tenant") and args.tenant is None:
        args.tenant = "default"


# ---- parser -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailor", description="Customize pretrained models on your own data, "
                                                                "offline: check data, fine-tune, evaluate, register, predict.")
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
    train.add_argument("--method", choices=["auto", "full", "lora", "head"], help="default auto")
    train.add_argument("--name", help="registry name (default: from the file name)")
    train.add_argument("--preset", default="default", help="config preset: default, fast, quality (--task chat: "
                                                            "default, fast)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", type=float, help="peak learning rate (full fine-tuning)")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--max-length", type=int, help="tokens per text")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto, cpu, cuda")
    train.add_argument("--search", type=int, default=0, metavar="N", help="run N hyperparameter-search trials")
    train.add_argument("--time-budget", type=parse_duration, metavar="DURATION", help="e.g. 10m: stop in time")
    train.add_argument("--resume", action="store_true", help="resume the same job from its last checkpoint")
    common(train)
    train.set_defaults(func=cmd_train)

    ev = verbs.add_parser("eval", help="evaluate a registered model on a labelled file")
    ev.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    ev.add_argument("file")
    columns(ev)
    ev.add_argument("--report", metavar="HTML", help="write an HTML report")
    common(ev)
    ev.set_defaults(func=cmd_eval)

    pr = verbs.add_parser("predict", help="classify texts with a registered model")
    pr.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    pr.add_argument("texts", nargs="*", help="texts to classify")
    pr.add_argument("--file", help="a file with one text per line")
    common(pr)
    pr.set_defaults(func=cmd_predict)

    models = verbs.add_parser("models", help="the model registry").add_subparsers(dest="models_verb", metavar="VERB",
                                                                                  required=True)
    ls = models.add_parser("list", help="registered models")
    ls.add_argument("--all-tenants", action="store_true", help="every tenant's models (operator view)")
    common(ls)
    ls.set_defaults(func=cmd_models_list)
    show = models.add_parser("show", help="one version: metrics, lineage, artifacts")
    show.add_argument("ref")
    common(show)
    show.set_defaults(func=cmd_models_show)
    alias = models.add_parser("alias", help="point an alias (e.g. production) at a version")
    alias.add_argument("ref")
    alias.add_argument("alias")
    common(alias)
    alias.set_defaults(func=cmd_models_alias)
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
    catalog = models.add_parser("catalog", help="base models available to fine-tune")
    common(catalog, tenant=False)
    catalog.set_defaults(func=cmd_models_catalog)

    chat = verbs.add_parser("chat", help="chat in the terminal with a chat model (streams the answers)")
    chat.add_argument("model", help="smollm2-135m-instruct, a fine-tuned chat model (name, name:N, name@alias) "
                                    "or a directory")
    chat.add_argument("-m", "--message", help="ask one question, print the answer and exit")
    chat.add_argument("--system", help="a system prompt (default: the one the model was fine-tuned with, if any)")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default) answers greedily")
    chat.add_argument("--seed", type=int)
    common(chat)
    chat.set_defaults(func=cmd_chat)

    serve = verbs.add_parser("serve", help="run the REST API (OpenAI-compatible) and the job workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, help="job worker processes (default: TAILOR_WORKERS or 1)")
    serve.add_argument("--no-workers", action="store_true", help="serve the API only; run no jobs here")
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

    keys = verbs.add_parser("keys", help="a tenant's API keys").add_subparsers(dest="keys_verb", metavar="VERB",
                                                                               required=True)
    kc = keys.add_parser("create", help="a new API key, printed once")
    kc.add_argument("tenant")
    kc.add_argument("--name", default="", help="what the key is for")
    kc.add_argument("--scopes", default="read", help="comma-separated: read, train, deploy, admin (default: read)")
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

    jobs = verbs.add_parser("jobs", help="fine-tuning jobs of the service").add_subparsers(
        dest="jobs_verb", metavar="VERB", required=True)
    jl = jobs.add_parser("list", help="jobs, newest first")
    jl.add_argument("--all-tenants", action="store_true", help="every tenant's jobs (operator view)")
    jl.add_argument("--limit", type=int, default=20)
    common(jl)
    jl.set_defaults(func=cmd_jobs_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tailor`` command."""
    args = build_parser().parse_args(argv)
    _tenant_of_fine_tuned_id(args)
    from tailor.errors import TailorError

    try:
        return args.func(args)
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
