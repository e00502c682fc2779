"""The CLI's domain-adaptation verb: ``tailor adapt --corpus notes.txt --base minilm-l6 --name med-minilm``
continues a base encoder's training on the tenant's unlabelled texts (:mod:`tailor.train.adapt`); later jobs
start from it with ``--base med-minilm``. ``tailor models catalog`` lists the tenant's adapted bases."""

from __future__ import annotations

# tailor.train.adapt's OBJECTIVES and DEFAULT_OBJECTIVE (a test keeps them equal): importing that module here
# would load the settings (pydantic) on every `tailor --help`.
OBJECTIVES = ("tsdae", "simcse")
DEFAULT_OBJECTIVE = "tsdae"


def cmd_adapt(args) -> int:
    from tailor.cli import _show
    from tailor.cli_audit import note_audit
    from tailor.train.adapt import describe_adaptation, run_adaptation
    from tailor.train.progress import ConsoleReporter

    result = run_adaptation(args.corpus, base=args.base, name=args.name, tenant=args.tenant or "default",
                            objective=args.objective, text_col=args.text_col, steps=args.steps,
                            time_budget_s=args.time_budget, seed=args.seed, reporter=ConsoleReporter(), lr=args.lr,
                            batch_size=args.batch_size, max_length=args.max_length,
                            deletion_ratio=args.deletion_ratio)
    note_audit(args, model=result.base)
    return _show(args, result.summary(), describe_adaptation(result.record))


def add_parsers(verbs, common) -> None:
    """Register ``tailor adapt``."""
    from tailor.cli import parse_duration

    adapt = verbs.add_parser("adapt", help="adapt a base encoder to your domain's unlabelled texts (TSDAE or "
                                           "SimCSE); train on it later with --base NAME")
    adapt.add_argument("--corpus", required=True, metavar="FILE",
                       help="unlabelled texts: a .txt file (one per line) or CSV/TSV/JSONL with a text column")
    adapt.add_argument("--name", required=True, help="the adapted base's name (e.g. med-minilm)")
    adapt.add_argument("--base", default="minilm-l6", help="the encoder to start from: a catalog id, a local "
                                                           "Hugging Face directory or an adapted base (default "
                                                           "minilm-l6)")
    adapt.add_argument("--objective", choices=OBJECTIVES, default=DEFAULT_OBJECTIVE,
                       help="tsdae: reconstruct each text from its sentence vector after deleting 60%% of its "
                            "words; simcse: tell dropout views of a text apart (refused when the base already "
                            f"does) (default {DEFAULT_OBJECTIVE})")
    adapt.add_argument("--text-col", help="the corpus's text column (else guessed)")
    adapt.add_argument("--steps", type=int, help="optimizer steps (default one pass over the corpus, at most 1000)")
    adapt.add_argument("--time-budget", type=parse_duration, metavar="DURATION", help="e.g. 10m: stop in time")
    adapt.add_argument("--lr", type=float, help="peak learning rate (default 3e-5)")
    adapt.add_argument("--batch-size", type=int, help="texts per step (default 32)")
    adapt.add_argument("--max-length", type=int, help="tokens per text (default 128)")
    adapt.add_argument("--deletion-ratio", type=float, help="TSDAE: share of words deleted (default 0.6)")
    adapt.add_argument("--seed", type=int, default=42)
    common(adapt)
    adapt.set_defaults(func=cmd_adapt)
