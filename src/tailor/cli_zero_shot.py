"""The CLI's ``tailor zero-shot`` verb: a classifier from label names alone (:mod:`tailor.train.zero_shot`).

- ``tailor zero-shot --labels "billing,technical issue,cancellation" --name support``: registers ``support:1``,
  a method-``head`` version whose head rows are the label names' embeddings;
- ``tailor zero-shot --labels-file labels.json --eval-file tickets.csv``: descriptions from the file (JSON
  ``{label: description}``, CSV ``label,description``, TXT one label per line), scored on the eval file.

Pre-labelling texts for review is then ``tailor predict support --file texts.txt --json``.
"""

from __future__ import annotations


def _name(args) -> str:
    """``--name``, else one from the labels file's name (its folder's for ``labels.json`` and the like), else the
    eval file's (see :func:`tailor.train.job.default_name`).

    Raises:
        UsageError: no name given and none can be made (``--labels`` alone, or generic file names).
    """
    from tailor.errors import UsageError
    from tailor.train.job import default_name

    if args.name:
        return args.name
    for path in (args.labels_file, args.eval_file):
        if path:
            try:
                return default_name(path)
            except UsageError:
                continue
    raise UsageError("name the model: pass --name NAME")


def _labels(args) -> tuple[list[str], dict[str, str]]:
    from tailor.train.zero_shot import parse_labels, read_label_file

    if args.labels_file:
        return read_label_file(args.labels_file)
    return parse_labels(args.labels), {}


def _text(result, eval_file: str | None) -> str:
    from tailor.eval.report import format_eval_text

    summary = result.summary()
    lines = []
    if result.metrics is not None:
        lines += [format_eval_text({"model": summary["model"], "data": eval_file, "metrics": result.metrics,
                                    "baseline": result.baseline, "base_model": summary["base_model"]}), ""]
    else:
        lines += ["no test metrics: nothing was measured (give --eval-file FILE to score the version)", ""]
    lines += [f"registered {summary['model']}  (zero-shot from {len(summary['prompts'])} label prompts on "
              f"{summary['base_model']}, serving on {summary['runtime']}, {summary['timings']['total_s']}s)",
              f"pre-label texts for review: tailor predict {summary['name']} --file texts.txt --json"]
    return "\n".join(lines)


def cmd_zero_shot(args) -> int:
    from tailor.cli import _cli_actor, _show
    from tailor.cli_audit import note_audit
    from tailor.train.progress import ConsoleReporter
    from tailor.train.zero_shot import run_zero_shot_job

    labels, descriptions = _labels(args)
    result = run_zero_shot_job(labels, descriptions=descriptions, name=_name(args), base=args.base,
                               eval_file=args.eval_file, text_col=args.text_col, label_col=args.label_col,
                               tenant=args.tenant, reporter=ConsoleReporter(), actor=_cli_actor(),
                               new_labels=args.new_labels)
    note_audit(args, model=result.version.ref)
    return _show(args, result.summary(), _text(result, args.eval_file))


def add_parsers(verbs, common) -> None:
    """Register ``tailor zero-shot``."""
    zs = verbs.add_parser("zero-shot", help="a classifier from label names alone (no training): each text gets the "
                                            "label whose name (and description) is nearest in embeddings")
    given = zs.add_mutually_exclusive_group(required=True)
    given.add_argument("--labels", metavar="A,B,...", help='comma-separated labels, e.g. "billing,technical '
                                                          'issue,cancellation" (_ and - read as spaces)')
    given.add_argument("--labels-file", metavar="FILE", help="labels with optional one-line descriptions: JSON "
                                                             '{"label": "description"}, CSV label,description, '
                                                             "or TXT one label per line")
    zs.add_argument("--eval-file", help="a labelled file to score the version on (test metrics, majority baseline, "
                                        "the runtime gate); without it nothing is measured")
    zs.add_argument("--text-col", help="the eval file's text column (or JSON key); guessed when obvious")
    zs.add_argument("--label-col", help="the eval file's label column (or JSON key); guessed when obvious")
    zs.add_argument("--name", help="registry name (default: from the labels file's name, else the eval file's)")
    zs.add_argument("--base", default="auto", help="base encoder: auto (default: from the eval texts, else the "
                                                   "labels), a catalog id (minilm-l6, me5-small) or a local "
                                                   "Hugging Face directory")
    zs.add_argument("--new-labels", action="store_true", help="register a new version even if its labels differ "
                                                              "from the model's latest version's")
    common(zs)
    zs.set_defaults(func=cmd_zero_shot)
