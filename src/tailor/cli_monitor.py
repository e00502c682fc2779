"""The CLI's monitoring verbs, on this machine's database and storage root (as the server sees them):

- ``tailor monitor REF``: a classifier version's report (traffic, latency, label mix, estimated and measured
  accuracy, input drift);
- ``tailor alerts NAME``: the model's alerts; with ``--rule``/``--webhook``/``--store-inputs`` its settings,
  with ``--check`` a judgement now (posting to the webhook);
- ``tailor review REF``: the review queue, as a table or exported (CSV, JSONL, Label Studio);
- ``tailor feedback FILE``: labels in bulk (a labelled export of the queue);
- ``tailor corrections REF``: a chat model's corrected answers as chat fine-tuning rows.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path


def _local(args):
    """``(registry, prediction store, feedback store)`` of this machine."""
    from tailor.monitor.feedback import FeedbackStore
    from tailor.monitor.records import PredictionStore
    from tailor.registry.service import open_registry
    from tailor.settings import get_settings

    url = get_settings().registry_url
    return open_registry(), PredictionStore(url), FeedbackStore(url)


def _classifier(registry, tenant: str, ref: str, what: str):
    from tailor.errors import UsageError

    version = registry.store.resolve(tenant, ref)
    if version.task != "classify":
        raise UsageError(f"{version.ref} is a {version.task} model; {what} cover classifiers")
    return version


def _drift_inputs(registry, version):
    """``(fingerprint, embed)`` of a version: its base encoder (as the server's drift test), loaded only when
    there are texts to embed."""
    from tailor.data.fingerprint import load_fingerprint
    from tailor.monitor.drift import EmbeddingCache

    @functools.cache
    def encoder():
        from tailor.models.embed import TextEncoder

        return TextEncoder.from_base(version.base_model)

    return (load_fingerprint(registry.artifact_dir(version)),
            EmbeddingCache().embedder((), lambda texts: encoder().embed(texts)[0]))


def _report(registry, records, feedback, version, hours: float, bucket_minutes: float) -> dict:
    """A version's monitoring report, with its drift inputs (:func:`tailor.monitor.report.version_report`)."""
    from tailor.monitor.report import version_report

    fingerprint, embed = _drift_inputs(registry, version)
    return version_report(records, feedback, version, hours, bucket_minutes, fingerprint=fingerprint, embed=embed)


def cmd_monitor(args) -> int:
    from tailor.cli import _show
    from tailor.monitor.report import describe_report

    registry, records, feedback = _local(args)
    version = _classifier(registry, args.tenant, args.ref, "monitoring reports")
    report = _report(registry, records, feedback, version, args.hours, args.bucket_minutes)
    return _show(args, report, describe_report(report))


def cmd_alerts(args) -> int:
    from tailor.cli import _show
    from tailor.monitor.alerts import AlertLoop, AlertStore, WebhookSender, window_reports
    from tailor.monitor.config import (
        ConfigStore, MonitoringConfig, check_webhook_url, check_window_hours, parse_rule_text, parse_rules,
    )
    from tailor.settings import get_settings

    registry, records, feedback = _local(args)
    model = registry.store.get_model(args.tenant, args.name)
    settings = get_settings()
    configs, alerts = ConfigStore(settings.registry_url), AlertStore(settings.registry_url)
    config = configs.get(args.tenant, model.name)
    if args.rule or args.no_rules or args.webhook or args.store_inputs is not None or args.window_hours:
        rules = () if args.no_rules else config.rules
        if args.rule:
            rules = parse_rules([parse_rule_text(r) for r in args.rule])
        webhook = config.webhook_url if args.webhook is None else (None if args.webhook == "none" else args.webhook)
        config = configs.put(MonitoringConfig(
            args.tenant, model.name, config.store_inputs if args.store_inputs is None else args.store_inputs,
            check_window_hours(args.window_hours or config.window_hours), rules, check_webhook_url(webhook)))
    changed = []
    if args.check:
        def reports_for(cfg):
            return window_reports(records, registry.store, cfg, functools.partial(_report, registry, records, feedback))

        sender = WebhookSender(alerts, timeout_s=settings.webhook_timeout_s, attempts=settings.webhook_attempts,
                               backoff_s=settings.webhook_backoff_s)
        sender.start()
        changed = AlertLoop(configs, alerts, sender, reports_for).check(config)
        sender.join()
        sender.stop()
    listed = alerts.list(args.tenant, model.name, args.state, args.limit)
    result = {"config": config.to_dict(), "changed": [a.to_dict() for a in changed],
              "alerts": [a.to_dict() for a in listed]}
    return _show(args, result, _describe_alerts(config, listed, changed if args.check else None))


def _describe_alerts(config, listed, changed) -> str:
    rules = ", ".join(r.key() for r in config.rules) or "none"
    lines = [f"{config.model_name}: store inputs {'on' if config.store_inputs else 'off'}; rules over the last "
             f"{config.window_hours:g} h: {rules}; webhook {config.webhook_url or 'none'}"]
    if changed is not None:
        lines.append(f"checked now: {len(changed)} alert(s) fired or resolved")
    lines.append("alerts:" if listed else "alerts: none")
    for alert in listed:
        lines.append(f"  {alert.fired_at:%Y-%m-%d %H:%M}  {alert.model_name}:{alert.version}  {alert.rule}  "
                     f"(value {alert.value})  {alert.state}  delivery {alert.delivery}"
                     + (f" ({alert.last_error})" if alert.last_error else ""))
    return "\n".join(lines)


def cmd_review(args) -> int:
    from tailor.cli import _emit_json
    from tailor.monitor.review import export, version_queue

    registry, records, feedback = _local(args)
    version = _classifier(registry, args.tenant, args.ref, "review queues")
    fingerprint, embed = _drift_inputs(registry, version)
    items = version_queue(records, feedback, version, fingerprint=fingerprint, embed=embed, limit=args.limit,
                          hours=args.hours)
    if args.format == "table":
        if args.json:
            _emit_json({"object": "list", "model": version.ref, "data": items})
            return 0
        print(f"{version.ref}: {len(items)} answers to label first (uncertain, novel, near-duplicates removed)")
        for item in items:
            print(f"{item['prediction_id']}\t{item['label']}\t{item['score']:.3f}\tunc {item['uncertainty']:.2f}"
                  f"\tnov {item['novelty']:.2f}\t{item['input'][:80]}")
        return 0
    body, _ = export(items, args.format, version.ref)
    return _write(body, args.output, f"wrote {len(items)} answers to {args.output}; fill in the labels, then: "
                                     f"tailor feedback {args.output}")


def _write(body: str, output: str | None, done: str) -> int:
    """``body`` to the file ``output`` (saying ``done`` on stderr), or to stdout without one."""
    if output:
        Path(output).write_text(body, encoding="utf-8")
        print(done, file=sys.stderr)
    else:
        sys.stdout.write(body)
    return 0


def cmd_feedback(args) -> int:
    from tailor.cli import _show
    from tailor.errors import UsageError
    from tailor.monitor.feedback import give_feedback
    from tailor.monitor.review import read_labels

    _, records, feedback = _local(args)
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    items = read_labels(path.read_bytes(), path.name)
    if not items:
        raise UsageError(f"{path}: no labelled rows (fill in true_label)")
    given = give_feedback(records, feedback, args.tenant, items)
    return _show(args, {"object": "feedback.import", "rows": len(given), "data": [f.to_dict() for f in given]},
                 f"{len(given)} labels recorded as feedback")


def cmd_corrections(args) -> int:
    import json

    registry, _, feedback = _local(args)
    version = registry.store.resolve(args.tenant, args.ref)
    if version.task != "chat":
        from tailor.errors import UsageError

        raise UsageError(f"{version.ref} is a {version.task} model; corrections are kept for chat models")
    rows = feedback.corrections(args.tenant, version.name)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return _write(body, args.output, f"wrote {len(rows)} corrected answers to {args.output} (train on it: "
                                     f"tailor train --task chat {args.output})")


def add_parsers(verbs, common) -> None:
    """The monitoring verbs on the CLI's sub-parsers; ``common`` adds ``--tenant`` and ``--json``."""
    mo = verbs.add_parser("monitor", help="how a served classifier is doing: traffic, latency, label mix, accuracy "
                                          "estimated without labels and measured on feedback, input drift")
    mo.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    mo.add_argument("--hours", type=float, default=24.0, help="the window: the last this many hours (default 24)")
    mo.add_argument("--bucket-minutes", type=float, default=60.0, help="the width of each time bucket (default 60)")
    common(mo)
    mo.set_defaults(func=cmd_monitor)

    al = verbs.add_parser("alerts", help="a model's alerts; its alert rules, webhook and store-inputs setting")
    al.add_argument("name", help="the model's name")
    al.add_argument("--rule", action="append", metavar="RULE",
                    help="replace the rules (repeat for several): METRIC<NUMBER, e.g. estimated_accuracy<0.8, "
                         "latency_p95_ms>250, input_drift")
    al.add_argument("--no-rules", action="store_true", help="remove every rule")
    al.add_argument("--webhook", metavar="URL", help="post alerts here as JSON ('none' removes it)")
    al.add_argument("--store-inputs", action=argparse.BooleanOptionalAction, default=None,
                    help="keep the input of answers whose request does not say \"store\"")
    al.add_argument("--window-hours", type=float, help="the window each rule is judged on (default 1)")
    al.add_argument("--check", action="store_true", help="judge the rules now and post what fires or resolves")
    al.add_argument("--state", choices=["firing", "resolved"], help="list only these")
    al.add_argument("--limit", type=int, default=20, help="most alerts listed (default 20)")
    common(al)
    al.set_defaults(func=cmd_alerts)

    rv = verbs.add_parser("review", help="the stored answers worth labelling first (uncertain, novel), or their "
                                         "export for labelling")
    rv.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    rv.add_argument("--limit", type=int, default=50, help="most answers (default 50)")
    rv.add_argument("--hours", type=float, default=24 * 7, help="answers of the last this many hours (default 168)")
    rv.add_argument("--format", choices=["table", "csv", "jsonl", "label_studio"], default="table",
                    help="table (default), or an export: csv/jsonl with an empty true_label column, Label Studio JSON")
    rv.add_argument("--output", "-o", metavar="FILE", help="write the export here instead of to stdout")
    common(rv)
    rv.set_defaults(func=cmd_review)

    fb = verbs.add_parser("feedback", help="true labels in bulk: a labelled review export (CSV/JSONL with "
                                           "prediction_id and true_label, or a Label Studio export)")
    fb.add_argument("file")
    common(fb)
    fb.set_defaults(func=cmd_feedback)

    cr = verbs.add_parser("corrections", help="a chat model's corrected answers as chat fine-tuning rows (JSONL)")
    cr.add_argument("ref", help="the chat model: name, name:VERSION or name@ALIAS")
    cr.add_argument("--output", "-o", metavar="FILE", help="write the rows here instead of to stdout")
    common(cr)
    cr.set_defaults(func=cmd_corrections)
