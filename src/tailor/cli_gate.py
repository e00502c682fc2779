"""The CLI's release-gate verbs, on this machine's database (as the server sees it):

- ``tailor gate set TENANT --min-macro-f1 0.8 --max-slice-gap 0.1 --max-flip-rate 0.05``: the tenant's policy
  (the thresholds given replace the whole policy; ``tailor gate set TENANT`` alone removes it);
- ``tailor gate show TENANT``: the policy now.

:func:`gated_reason` checks a release change (``models alias``, ``canary``, ``promote``) against the gate; the
CLI is the operator, so ``--override --reason`` lets a failing version through (recorded in the alias history).
"""

from __future__ import annotations

import argparse


def _gates():
    from tailor.registry.gate import GateStore
    from tailor.settings import get_settings

    return GateStore(get_settings().registry_url)


def gated_reason(args, store, name: str, version: int | None, alias: str | None = None) -> str | None:
    """The reason to record for a release change of ``name`` to ``version`` (None: the alias's candidate),
    checked against the tenant's gate with the command's ``--override`` and ``--reason``.

    Raises:
        GateRefused: the version fails the gate (exit 2, the failing numbers in the message).
        UsageError: ``--override`` without ``--reason``.
    """
    from tailor.registry.gate import check_release

    return check_release(_gates(), store, args.tenant, name, version, alias=alias, override=args.override,
                         reason=args.reason)


def add_override(parser) -> None:
    """``--override`` on a gated release verb."""
    parser.add_argument("--override", action="store_true",
                        help="let a version that fails the tenant's release gate through (needs --reason; the "
                             "override and the failing numbers are kept in the alias history)")


def _policy_text(tenant: str, policy) -> str:
    from tailor.registry.gate import THRESHOLDS

    if not policy.active:
        return f"tenant {tenant}: no release gate (any version may be released)"
    names = {"min_accuracy": "test accuracy >=", "min_macro_f1": "test macro-F1 >=",
             "max_slice_gap": "largest slice gap <=", "max_flip_rate": "counterfactual flip rate <="}
    lines = [f"tenant {tenant}: a version must have"]
    lines += [f"  {names[n]} {getattr(policy, n):g}" for n in THRESHOLDS if getattr(policy, n) is not None]
    if policy.require_fairness:
        lines.append("  a bias report with a slice column (tailor eval --slice-col)")
    return "\n".join(lines)


def cmd_gate_set(args) -> int:
    from tailor.cli import _cli_actor, _show
    from tailor.registry.gate import THRESHOLDS, GatePolicy

    policy = GatePolicy(**{n: getattr(args, n) for n in THRESHOLDS}, require_fairness=args.require_fairness)
    _gates().set(args.tenant, policy, actor=_cli_actor())
    return _show(args, {"tenant": args.tenant, **policy.to_dict()}, _policy_text(args.tenant, policy))


def cmd_gate_show(args) -> int:
    from tailor.cli import _show

    policy = _gates().get(args.tenant)
    return _show(args, {"tenant": args.tenant, **policy.to_dict()}, _policy_text(args.tenant, policy))


def add_parsers(verbs, common) -> None:
    """Register ``tailor gate set|show``."""
    gate = verbs.add_parser("gate", help="a tenant's release gate: the accuracy floor and bias thresholds a "
                                         "version must pass before an alias serves it").add_subparsers(
        dest="gate_verb", metavar="VERB", required=True)
    gs = gate.add_parser("set", help="set the tenant's gate (replaces it; no threshold removes it)")
    gs.add_argument("tenant", metavar="TENANT")
    for name, help_text in (("min_accuracy", "the lowest test accuracy (0..1)"),
                            ("min_macro_f1", "the lowest test macro-F1 (0..1)"),
                            ("max_slice_gap", "the largest accuracy gap between slices (tailor eval --slice-col)"),
                            ("max_flip_rate", "the highest counterfactual flip rate (tailor eval --counterfactual)")):
        gs.add_argument("--" + name.replace("_", "-"), dest=name, type=float, metavar="X", help=help_text)
    gs.add_argument("--require-fairness", action=argparse.BooleanOptionalAction, default=False,
                    help="a version must have a bias report with a slice column")
    common(gs, tenant=False)
    gs.set_defaults(func=cmd_gate_set)
    show = gate.add_parser("show", help="the tenant's gate")
    show.add_argument("tenant", metavar="TENANT")
    common(show, tenant=False)
    show.set_defaults(func=cmd_gate_show)
