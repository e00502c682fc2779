"""``--search N``: Optuna trials over the method's hyperparameters, scored by validation macro-F1."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from tailor.train.classify import FitOutcome
from tailor.train.config import TrainConfig
from tailor.train.progress import Reporter


def suggest(trial, method: str) -> dict:
    """The search space of ``method`` as config overrides for one Optuna trial."""
    if method == "head":
        return {"head_lr": trial.suggest_float("head_lr", 1e-3, 1e-1, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1)}
    if method == "contrastive":
        return {"contrastive_lr": trial.suggest_float("contrastive_lr", 1e-5, 1e-4, log=True),
                "contrastive_steps": trial.suggest_int("contrastive_steps", 10, 60, step=10),
                "head_lr": trial.suggest_float("head_lr", 1e-3, 1e-1, log=True)}
    space = {"batch_size": trial.suggest_categorical("batch_size", [8, 16, 32]),
             "epochs": trial.suggest_int("epochs", 2, 5),
             "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1)}
    if method == "lora":
        space["lora_lr"] = trial.suggest_float("lora_lr", 2e-4, 3e-3, log=True)
        space["lora_r"] = trial.suggest_categorical("lora_r", [8, 16, 32])
    else:
        space["lr"] = trial.suggest_float("lr", 2e-5, 2e-4, log=True)
    return space


@dataclass
class SearchResult:
    """The best trial's config, trained model and outcome, and a row per trial."""

    config: TrainConfig
    model: object
    outcome: FitOutcome
    trials: list[dict] = field(default_factory=list)


def run_search(n_trials: int, cfg: TrainConfig, method: str, fit: Callable[[TrainConfig], tuple[object, FitOutcome]],
               reporter: Reporter, deadline: float | None = None) -> SearchResult:
    """Run up to ``n_trials`` trials (TPE, seeded), stopping early when ``deadline`` passes.

    Args:
        fit: trains a fresh model for a config and returns ``(model, outcome)``.

    Returns:
        The best trial's model and config; the others are discarded.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best: SearchResult | None = None
    trials: list[dict] = []

    def objective(trial) -> float:
        nonlocal best
        trial_cfg = cfg.with_overrides(**suggest(trial, method))
        model, outcome = fit(trial_cfg)
        trials.append({"trial": trial.number, "params": trial.params, "valid_macro_f1": outcome.best_valid_f1})
        reporter.message(f"trial {trial.number + 1}/{n_trials}: valid macro-F1 {outcome.best_valid_f1:.4f}",
                         trial=trial.number, params=trial.params, valid_macro_f1=outcome.best_valid_f1)
        if best is None or outcome.best_valid_f1 > best.outcome.best_valid_f1:
            best = SearchResult(trial_cfg, model, outcome)
        return outcome.best_valid_f1

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    best.trials = trials
    reporter.message(f"best trial: {study.best_trial.number + 1} with valid macro-F1 {study.best_value:.4f}",
                     params=study.best_params)
    return best
