"""Domain adaptation without labels: continue training a base encoder on the client's own texts.

``tailor adapt --corpus notes.txt --base minilm-l6 --name med-minilm`` runs :func:`run_adaptation` with one of
two objectives (``--objective``), both of which train the mean-pooled sentence vector that the ``head`` and
``contrastive`` methods read, and neither of which needs a masked-LM head (the catalog's encoders ship
without one):

- **TSDAE** (Wang et al., 2021; the default): delete 60% of each text's words, encode what is left, mean-pool
  it to one vector, and train a decoder to rebuild the original text from that vector alone (it
  cross-attends to nothing else). The decoder is the base's own architecture as a causal LM with every
  weight it shares with the encoder tied to it, as TSDAE does; it is dropped afterwards.
- **Unsupervised SimCSE** (Gao et al., 2021): each text is encoded twice with dropout on; the two views of a
  text are a positive pair and every other text in the batch is a negative (cross-entropy over cosine
  similarities / ``temperature``). Bases trained contrastively already (all-MiniLM, E5) tell dropout views
  apart almost perfectly, so the loss is saturated, the gradients vanish and Adam turns them into noise:
  SimCSE is refused (exit code 2) when the held-out loss starts under :data:`SATURATED_SIMCSE_LOSS`.

A held-out 5% of the corpus measures the objective before and after (lower is better; for TSDAE the
"before" figure is mostly the untrained cross-attention's); the record is kept with the base.
The result is **an adapted base**, the tenant's own: stored under ``<home>/bases/<tenant>/<name>`` (sealed
like model artifacts when a master key is set) and named ``adapted:<tenant>/<name>`` wherever a base is
recorded. Any later job of that tenant starts from it with ``--base <name>``; a version trained on it
records the adapted base as its ``base_model``, so it loads, serves and exports like any other.

A corpus under :data:`MIN_CORPUS_TEXTS` distinct texts is refused (exit code 2): too few to adapt on without
the encoder memorising them.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from tailor.catalog import ADAPTED_RECORD, adapted_bases, adapted_name, tenant_base
from tailor.errors import UsageError
from tailor.settings import Settings, get_settings
from tailor.train.progress import RecordingReporter, Reporter

MIN_CORPUS_TEXTS = 500
HELD_OUT_SHARE = 0.05
OBJECTIVES = ("tsdae", "simcse")
DEFAULT_OBJECTIVE = "tsdae"
LOSS_NAMES = {"tsdae": "TSDAE reconstruction loss", "simcse": "SimCSE loss"}
# TSDAE's recipe (Wang et al., 2021): lr 3e-5, 60% of words deleted; SimCSE's: lr 3e-5, temperature 0.05.
# Batch 32 fits a 2-core CPU.
DEFAULTS = {"lr": 3e-5, "temperature": 0.05, "deletion_ratio": 0.6, "batch_size": 32, "max_length": 128,
            "max_steps": 1000}
# A base whose held-out SimCSE loss is already this low tells the corpus's dropout views apart: the loss's
# gradients vanish and Adam turns them into lr-sized noise (measured: 0.0001 on medical abstracts, and the
# adapted MiniLM lost 10 macro-F1 points as a few-shot head's base).
SATURATED_SIMCSE_LOSS = 0.01
# What adaptation did where we measured it, kept in every record and said by the CLI: adapting is not a free
# gain, so a user compares both bases on their own validation rows before adopting the adapted one.
MEASURED_CAUTION = ("measured on medical abstracts (2,217 texts, minilm-l6): a head on 8 labels per class "
                    "scored lower on the adapted base (macro-F1, two draws: TSDAE 0.546 -> 0.471 and "
                    "0.437 -> 0.389; SimCSE 0.546 -> 0.449 on the first); train on both bases and keep this one "
                    "only if it scores higher on your validation rows")


@dataclass(frozen=True)
class AdaptResult:
    """An adaptation run: the adapted base's name (``adapted:<tenant>/<name>``), its directory and record."""

    base: str
    directory: Path
    record: dict

    def summary(self) -> dict:
        return {"base": self.base, **self.record}


def list_adapted(tenant: str, settings: Settings | None = None) -> list[dict]:
    """The tenant's adapted bases: each one's record (``name``, ``parent``, ``texts``, ``steps``, losses...)."""
    settings = settings or get_settings()
    root = settings.home / "bases" / tenant
    found = []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if directory.name.startswith("."):
            continue
        found.append(json.loads((adapted_bases(settings).path_for(f"{tenant}/{directory.name}") / ADAPTED_RECORD)
                                .read_text(encoding="utf-8")))
    return found


def read_corpus(path, text_col: str | None, settings: Settings) -> list[str]:
    """The corpus's distinct texts, in file order.

    Raises:
        DataError: unreadable file. UsageError: fewer than :data:`MIN_CORPUS_TEXTS` distinct texts.
    """
    from tailor.data.clean import normalize_text
    from tailor.data.ingest import read_texts

    texts, seen = [], set()
    for text in read_texts(path, text_col, max_bytes=settings.max_file_bytes).texts:
        key = normalize_text(text)
        if key and key not in seen:
            seen.add(key)
            texts.append(text)
    if len(texts) < MIN_CORPUS_TEXTS:
        raise UsageError(f"corpus {Path(str(path)).name} has {len(texts)} distinct texts; adapting needs at least "
                         f"{MIN_CORPUS_TEXTS}, or the encoder memorises them instead of learning the domain")
    return texts


def simcse_loss(encoder, input_ids, attention_mask, temperature: float):
    """Unsupervised SimCSE's loss for one batch: each row's second dropout view is its positive, the other
    rows' views its negatives."""
    import torch

    from tailor.models.classifier import mean_pool

    doubled_ids, doubled_mask = torch.cat([input_ids, input_ids]), torch.cat([attention_mask, attention_mask])
    hidden = encoder(input_ids=doubled_ids, attention_mask=doubled_mask).last_hidden_state
    vectors = torch.nn.functional.normalize(mean_pool(hidden, doubled_mask).float(), dim=-1)
    n = len(input_ids)
    logits = vectors[:n] @ vectors[n:].T / temperature
    return torch.nn.functional.cross_entropy(logits, torch.arange(n, device=logits.device))


def held_out_loss(encoder, encoded, pad_id: int, temperature: float, batch_size: int, device: str) -> float:
    """The SimCSE loss on held-out texts with dropout on (as in training), averaged over fixed batches; seeded
    so that the before and after figures see the same dropout masks."""
    import torch

    torch.manual_seed(0)
    encoder.train()

    def batch_loss(rows, batch):
        if len(batch["input_ids"]) < 2:
            return None
        return simcse_loss(encoder, batch["input_ids"], batch["attention_mask"], temperature)

    return _mean_loss(batch_loss, encoded, pad_id=pad_id, batch_size=batch_size, device=device)


def _mean_loss(batch_loss, encoded, *, pad_id: int, batch_size: int, device: str) -> float:
    """The mean of ``batch_loss(rows, batch)`` over ``encoded``'s batches in order, without gradients (a None
    loss skips its batch), rounded to 4 places: the held-out figure of both objectives."""
    import torch

    from tailor.train.batching import iter_batches

    total, batches = 0.0, 0
    with torch.no_grad():
        for rows, batch in iter_batches(encoded, batch_size, pad_id, shuffle=False, device=device):
            loss = batch_loss(rows, batch)
            if loss is not None:
                total += float(loss)
                batches += 1
    return round(total / max(batches, 1), 4)


def delete_words(text: str, ratio: float, rng: random.Random) -> str:
    """TSDAE's noise: drop each whitespace-separated word with probability ``ratio``, keeping at least one
    (a random one when every word drew deletion). Seeded by ``rng`` so a run repeats exactly."""
    words = text.split()
    if not words:
        return text
    kept = [w for w in words if rng.random() >= ratio]
    return " ".join(kept) if kept else rng.choice(words)


def build_tsdae_decoder(encoder, seed: int):
    """A decoder for TSDAE: the encoder's own architecture as a causal language model that cross-attends to
    one sentence vector, with every weight it shares with the encoder tied to it (embeddings, self-attention,
    feed-forward layers, and the output projection tied to the word embeddings), as TSDAE does; only the
    cross-attention and the prediction head's transform are new.

    Raises:
        UsageError: an architecture transformers has no cross-attending causal LM for.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = type(encoder.config).from_dict({**encoder.config.to_dict(), "is_decoder": True,
                                             "add_cross_attention": True})
    torch.manual_seed(seed)
    try:
        decoder = AutoModelForCausalLM.from_config(config)
    except ValueError as exc:
        raise UsageError(f"TSDAE needs a decoder of the base's architecture ({encoder.config.model_type}), which "
                         f"transformers lacks; use --objective simcse") from exc
    body = getattr(decoder, decoder.base_model_prefix)
    tie_shared_parameters(body, encoder)
    decoder.get_output_embeddings().weight = encoder.get_input_embeddings().weight
    return decoder


def tie_shared_parameters(target, source) -> int:
    """Make every parameter of ``target`` whose module path and shape also exist in ``source`` the very same
    tensor (so training either trains both). Returns how many were tied."""
    modules = dict(source.named_modules())
    tied = 0
    for path, module in target.named_modules():
        other = modules.get(path)
        if other is None:
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            shared = other._parameters.get(name)
            if shared is not None and shared.shape == param.shape:
                setattr(module, name, shared)
                tied += 1
    return tied


def tsdae_loss(encoder, decoder, damaged: dict, original: dict):
    """TSDAE's loss for one batch: encode the damaged texts, mean-pool each to one vector, and score the
    decoder's next-token reconstruction of the original texts from that vector alone (cross-entropy per
    token, padding ignored)."""
    import torch

    from tailor.models.classifier import mean_pool

    hidden = encoder(input_ids=damaged["input_ids"], attention_mask=damaged["attention_mask"]).last_hidden_state
    vectors = mean_pool(hidden, damaged["attention_mask"]).unsqueeze(1)
    target = original["input_ids"]
    labels = target.masked_fill(original["attention_mask"] == 0, -100)
    one = torch.ones(vectors.shape[:2], dtype=original["attention_mask"].dtype, device=vectors.device)
    return decoder(input_ids=target, attention_mask=original["attention_mask"], encoder_hidden_states=vectors,
                   encoder_attention_mask=one, labels=labels).loss


def damaged_batch(tokenizer, texts: list[str], ratio: float, rng: random.Random, max_length: int,
                  device: str) -> dict:
    """``texts`` with words deleted (:func:`delete_words`), tokenized and padded as model inputs."""
    damaged = [delete_words(text, ratio, rng) for text in texts]
    batch = tokenizer(damaged, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}


def held_out_tsdae_loss(encoder, decoder, tokenizer, texts: list[str], encoded, *, pad_id: int, ratio: float,
                        max_length: int, batch_size: int, device: str) -> float:
    """TSDAE's reconstruction loss on held-out texts, dropout off and the deletions seeded, so that the
    before and after figures see the same damaged texts."""
    rng = random.Random(0)
    encoder.eval()
    decoder.eval()

    def batch_loss(rows, batch):
        damaged = damaged_batch(tokenizer, [texts[i] for i in rows], ratio, rng, max_length, device)
        return tsdae_loss(encoder, decoder, damaged, batch)

    return _mean_loss(batch_loss, encoded, pad_id=pad_id, batch_size=batch_size, device=device)


def _adapt_loop(params, batch_loss, encoded, *, pad_id: int, steps: int, lr: float, batch_size: int, device: str,
                seed: int, reporter: Reporter, label: str, deadline: float | None) -> int:
    """The loop both objectives share: ``steps`` AdamW steps on ``params`` (linear warm-up over 10%, then decay,
    gradient norm clipped at 1), cycling through ``encoded`` in seeded shuffles; ``batch_loss(rows, batch)``
    gives a batch's loss (``rows``: its indices into ``encoded``), or None to skip it. Returns the steps taken
    (fewer if the deadline passes)."""
    import torch

    from tailor.train.batching import iter_batches
    from tailor.train.classify import linear_schedule

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    scheduler = linear_schedule(optimizer, max(1, steps // 10), steps)
    reporter.start(label, steps)
    taken, epoch, t0, loss_sum, out_of_time = 0, 0, time.perf_counter(), 0.0, False
    while taken < steps and not out_of_time:
        epoch += 1
        for rows, batch in iter_batches(encoded, batch_size, pad_id, shuffle=True, seed=seed + epoch, device=device):
            loss = batch_loss(rows, batch)
            if loss is None:
                continue
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            taken += 1
            loss_sum += loss.item()
            reporter.advance(1, step=taken, loss=loss_sum / taken,
                             items_s=taken * batch_size / (time.perf_counter() - t0))
            out_of_time = deadline is not None and time.monotonic() > deadline
            if taken >= steps or out_of_time:
                break
    reporter.finish()
    return taken


def fit_tsdae(encoder, decoder, tokenizer, texts: list[str], encoded, *, pad_id: int, steps: int, lr: float,
              ratio: float, max_length: int, batch_size: int, device: str, seed: int, reporter: Reporter,
              deadline: float | None = None) -> int:
    """Train ``encoder`` (and the decoder tied to it) with TSDAE for ``steps`` steps of :func:`_adapt_loop`,
    cycling through ``texts`` (tokenized as ``encoded``) with fresh seeded deletions. Returns the steps taken."""
    from tailor.train.classify import seed_everything

    seed_everything(seed)
    rng = random.Random(seed)
    encoder.to(device).train()
    decoder.to(device).train()
    params = list({id(p): p for p in [*encoder.parameters(), *decoder.parameters()]}.values())

    def batch_loss(rows, batch):
        damaged = damaged_batch(tokenizer, [texts[i] for i in rows], ratio, rng, max_length, device)
        return tsdae_loss(encoder, decoder, damaged, batch)

    return _adapt_loop(params, batch_loss, encoded, pad_id=pad_id, steps=steps, lr=lr, batch_size=batch_size,
                       device=device, seed=seed, reporter=reporter, label="denoising adaptation (TSDAE)",
                       deadline=deadline)


def fit_simcse(encoder, encoded, *, pad_id: int, steps: int, lr: float, temperature: float, batch_size: int,
               device: str, seed: int, reporter: Reporter, deadline: float | None = None) -> int:
    """Train ``encoder`` with unsupervised SimCSE for ``steps`` steps of :func:`_adapt_loop` (a batch of one row
    has no negative and is skipped). Returns the steps taken."""
    from tailor.train.classify import seed_everything

    seed_everything(seed)
    encoder.to(device).train()

    def batch_loss(rows, batch):
        if len(batch["input_ids"]) < 2:
            return None
        return simcse_loss(encoder, batch["input_ids"], batch["attention_mask"], temperature)

    return _adapt_loop(list(encoder.parameters()), batch_loss, encoded, pad_id=pad_id, steps=steps, lr=lr,
                       batch_size=batch_size, device=device, seed=seed, reporter=reporter,
                       label="contrastive adaptation (SimCSE)", deadline=deadline)


def run_adaptation(corpus, *, base: str = "minilm-l6", name: str, tenant: str = "default",
                   objective: str = DEFAULT_OBJECTIVE, text_col: str | None = None, steps: int | None = None,
                   time_budget_s: float | None = None, seed: int = 42, settings: Settings | None = None,
                   reporter: Reporter | None = None, **overrides) -> AdaptResult:
    """Adapt ``base`` to the texts of ``corpus`` and store it as the tenant's adapted base ``name``.

    Args:
        corpus: a file of unlabelled texts (``.txt`` one per line, or CSV/TSV/JSONL with a text column).
        base: a catalog id, a local Hugging Face directory, or one of the tenant's adapted bases.
        name: the adapted base's name (lower case letters, digits, ``.``, ``_``, ``-``).
        objective: ``tsdae`` (denoising auto-encoder) or ``simcse`` (see :data:`OBJECTIVES`).
        steps: optimizer steps (default one pass over the corpus, at most 1,000).
        time_budget_s: stop adapting after this many seconds.
        overrides: ``lr``, ``temperature``, ``deletion_ratio``, ``batch_size``, ``max_length``, ``max_steps``
            (see :data:`DEFAULTS`).

    Returns:
        An :class:`AdaptResult`.

    Raises:
        UsageError: a bad name, a name already taken, an unknown objective or option, a corpus too small, or
            (SimCSE) a held-out loss already under :data:`SATURATED_SIMCSE_LOSS`.
        DataError: an unreadable corpus.
    """
    from tailor.catalog import CATALOG, resolve_base
    from tailor.registry.refs import validate_name, validate_tenant
    from tailor.runtime import pick_device, setup_torch
    from tailor.train.batching import encode

    settings = settings or get_settings()
    reporter = reporter or RecordingReporter()
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown adaptation objective {objective!r}; objectives are: {', '.join(OBJECTIVES)}")
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise UsageError(f"unknown adaptation setting(s): {', '.join(sorted(unknown))}; settings are: "
                         f"{', '.join(DEFAULTS)}")
    options = {**DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    validate_tenant(tenant)
    validate_name(name)
    if name in CATALOG or ":" in name:
        raise UsageError(f"{name!r} names a catalog base; choose another name for the adapted one")
    store = adapted_bases(settings)
    if (store.root / tenant / name).exists():
        raise UsageError(f"adapted base {name!r} already exists for tenant {tenant!r}; choose another name")
    started = time.monotonic()
    texts = read_corpus(corpus, text_col, settings)
    setup_torch()
    from transformers import AutoModel, AutoTokenizer

    base_name = tenant_base(base, tenant, settings)
    resolved = resolve_base(base_name, progress=reporter)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    encoder = AutoModel.from_pretrained(resolved.path)
    device = pick_device("auto")
    shuffled = texts[:]
    random.Random(seed).shuffle(shuffled)
    n_held = max(options["batch_size"], math.ceil(len(shuffled) * HELD_OUT_SHARE))
    held, train = shuffled[:n_held], shuffled[n_held:]
    train_enc = encode(tokenizer, train, options["max_length"], [0] * len(train))
    held_enc = encode(tokenizer, held, options["max_length"], [0] * len(held))
    steps = steps or min(options["max_steps"], math.ceil(len(train) / options["batch_size"]))
    deadline = started + time_budget_s if time_budget_s else None
    reporter.message(f"adapting {resolved.name} with {objective} on {len(train)} texts ({len(held)} held out), "
                     f"{steps} steps of {options['batch_size']}")
    adapt = adapt_tsdae if objective == "tsdae" else adapt_simcse
    before, after, taken, fit_s = adapt(encoder, tokenizer, train, train_enc, held, held_enc, options=options,
                                        steps=steps, device=device, seed=seed, reporter=reporter,
                                        deadline=deadline)
    reporter.message(f"held-out {LOSS_NAMES[objective]} {before:.4f} -> {after:.4f}")
    record = {"name": name, "tenant": tenant, "parent": resolved.name, "objective": objective,
              "corpus": {"path": str(corpus), "texts": len(texts), "held_out": len(held)},
              "steps": taken, "options": options, "held_out_loss": {"before": before, "after": after},
              "seconds": {"adapt": round(fit_s, 1), "total": round(time.monotonic() - started, 1)},
              "max_length": resolved.max_length, "seed": seed, "caution": MEASURED_CAUTION}
    with store.stage() as staged:
        encoder.eval().save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        (staged / ADAPTED_RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        directory = store.publish(staged, f"{tenant}/{name}")
    reporter.message(f"adapted base {name} stored; train on it with --base {name}")
    return AdaptResult(adapted_name(tenant, name), directory, record)


def adapt_tsdae(encoder, tokenizer, train, train_enc, held, held_enc, *, options: dict, steps: int, device: str,
                seed: int, reporter: Reporter, deadline: float | None) -> tuple[float, float, int, float]:
    """TSDAE on ``encoder`` in place: the held-out reconstruction loss before and after, the steps taken and
    the seconds they took. The decoder is built here and dropped afterwards (only the encoder is kept)."""
    decoder = build_tsdae_decoder(encoder, seed)
    encoder.to(device)
    decoder.to(device)
    shared = {"pad_id": tokenizer.pad_token_id, "ratio": options["deletion_ratio"],
              "max_length": options["max_length"], "device": device}
    before = held_out_tsdae_loss(encoder, decoder, tokenizer, held, held_enc, batch_size=options["batch_size"],
                                 **shared)
    t_fit = time.monotonic()
    taken = fit_tsdae(encoder, decoder, tokenizer, train, train_enc, steps=steps, lr=options["lr"],
                      batch_size=options["batch_size"], seed=seed, reporter=reporter, deadline=deadline, **shared)
    fit_s = time.monotonic() - t_fit
    after = held_out_tsdae_loss(encoder, decoder, tokenizer, held, held_enc, batch_size=options["batch_size"],
                                **shared)
    return before, after, taken, fit_s


def adapt_simcse(encoder, tokenizer, train, train_enc, held, held_enc, *, options: dict, steps: int, device: str,
                 seed: int, reporter: Reporter, deadline: float | None) -> tuple[float, float, int, float]:
    """SimCSE on ``encoder`` in place: the held-out loss before and after, the steps taken and their seconds.

    Raises:
        UsageError: the held-out loss is already under :data:`SATURATED_SIMCSE_LOSS`: the base tells this
            corpus's dropout views apart already, so SimCSE's gradients vanish and Adam's steps would be noise.
    """
    pad_id, temperature, batch_size = tokenizer.pad_token_id, options["temperature"], options["batch_size"]
    encoder.to(device)
    before = held_out_loss(encoder, held_enc, pad_id, temperature, batch_size, device)
    if before < SATURATED_SIMCSE_LOSS:
        raise UsageError(f"the base's held-out SimCSE loss on this corpus is already {before:.4f} (under "
                         f"{SATURATED_SIMCSE_LOSS}): it tells these texts apart, so SimCSE could only add noise; "
                         f"use --objective tsdae")
    t_fit = time.monotonic()
    taken = fit_simcse(encoder, train_enc, pad_id=pad_id, steps=steps, lr=options["lr"], temperature=temperature,
                       batch_size=batch_size, device=device, seed=seed, reporter=reporter, deadline=deadline)
    fit_s = time.monotonic() - t_fit
    after = held_out_loss(encoder, held_enc, pad_id, temperature, batch_size, device)
    return before, after, taken, fit_s


def describe_adaptation(record: dict) -> str:
    """One line for the CLI."""
    loss = record["held_out_loss"]
    return (f"adapted {record['parent']} -> {record['name']} on {record['corpus']['texts']} texts in "
            f"{record['steps']} steps ({record['seconds']['total']}s) with {record['objective']}; held-out "
            f"{LOSS_NAMES[record['objective']]} {loss['before']:.4f} -> {loss['after']:.4f}\n"
            f"caution: {record['caution']}")

