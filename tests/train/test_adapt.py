"""Domain adaptation: the corpus checks, the TSDAE and SimCSE objectives, SimCSE's refusal on a saturated
base, and an adapted base a later job trains on."""

from __future__ import annotations

import pytest

from samples import SAMPLE_TRAIN, sample_rows, write_csv
from tailor.errors import UsageError


def corpus_file(tmp_path, n: int):
    return write_csv(tmp_path / "corpus.csv", [(text,) for text, _ in sample_rows(SAMPLE_TRAIN)[:n]], header=("text",))


def test_a_corpus_too_small_is_refused(fresh_home, tmp_path):
    from tailor.train.adapt import run_adaptation

    with pytest.raises(UsageError) as info:
        run_adaptation(corpus_file(tmp_path, 120), base="minilm-l6", name="tweets-minilm")
    assert str(info.value) == ("corpus corpus.csv has 120 distinct texts; adapting needs at least 500, or the "
                               "encoder memorises them instead of learning the domain")


@pytest.mark.parametrize("name, kwargs, message", [
    ("minilm-l6", {}, "'minilm-l6' names a catalog base; choose another name for the adapted one"),
    ("ok-name", {"dropout": 0.2}, "unknown adaptation setting(s): dropout; settings are: lr, temperature, "
                                  "deletion_ratio, batch_size, max_length, max_steps"),
    ("ok-name", {"objective": "mlm"}, "unknown adaptation objective 'mlm'; objectives are: tsdae, simcse"),
])
def test_bad_names_and_settings_are_refused_before_reading(fresh_home, tmp_path, name, kwargs, message):
    from tailor.train.adapt import run_adaptation

    with pytest.raises(UsageError) as info:
        run_adaptation(tmp_path / "never-read.txt", name=name, **kwargs)
    assert str(info.value) == message


def test_simcse_loss_treats_the_other_rows_as_negatives():
    import torch

    from tailor.catalog import resolve_base
    from tailor.models.classifier import mean_pool
    from tailor.train.adapt import simcse_loss
    from transformers import AutoModel, AutoTokenizer

    base = resolve_base("minilm-l6")
    tokenizer, encoder = AutoTokenizer.from_pretrained(base.path), AutoModel.from_pretrained(base.path).eval()
    batch = tokenizer(["rates rise again", "the harvest was poor", "a new phone launched"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():  # dropout off: both views are the same vector
        loss = simcse_loss(encoder, batch["input_ids"], batch["attention_mask"], temperature=0.05)
        hidden = encoder(**batch).last_hidden_state
        vectors = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
    expected = torch.nn.functional.cross_entropy(vectors @ vectors.T / 0.05, torch.arange(3))
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert float(loss) < 0.01  # different topics: each text is far nearer to itself than to the others


def test_delete_words_drops_sixty_percent_seeded_and_keeps_one_word():
    import random

    from tailor.train.adapt import delete_words

    rng = random.Random(3)
    text = "rates rise again as the central bank meets on Tuesday"
    assert [delete_words(text, 0.6, rng) for _ in range(3)] == [
        "as the meets", "rates again the bank meets Tuesday", "rates again bank on Tuesday"]
    assert delete_words("a b c", 1.0, random.Random(0)) == "b"  # every word drew deletion: one is kept
    assert delete_words("single", 0.99, random.Random(0)) == "single"
    assert delete_words("", 0.6, random.Random(0)) == ""


def minilm():
    from tailor.catalog import resolve_base
    from transformers import AutoModel, AutoTokenizer

    base = resolve_base("minilm-l6")
    return AutoTokenizer.from_pretrained(base.path), AutoModel.from_pretrained(base.path)


def test_tsdae_decoder_shares_every_weight_it_can_with_the_encoder():
    from tailor.train.adapt import build_tsdae_decoder

    _, encoder = minilm()
    decoder = build_tsdae_decoder(encoder, seed=0)
    layer, source = decoder.bert.encoder.layer[5], encoder.encoder.layer[5]
    assert decoder.bert.embeddings.word_embeddings.weight is encoder.embeddings.word_embeddings.weight
    assert decoder.cls.predictions.decoder.weight is encoder.embeddings.word_embeddings.weight
    assert layer.attention.self.query.weight is source.attention.self.query.weight
    assert layer.output.dense.weight is source.output.dense.weight
    own = {id(p) for p in encoder.parameters()}
    new = {name.split(".")[4] if ".layer." in name else name for name, p in decoder.named_parameters()
           if id(p) not in own}
    # only the cross-attention and the prediction head's transform (and its bias) are the decoder's own
    assert new == {"crossattention", "cls.predictions.bias", "cls.predictions.transform.dense.weight",
                   "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
                   "cls.predictions.transform.LayerNorm.bias"}
    assert sum(p.numel() for p in decoder.parameters() if id(p) not in own) == 3_731_898


def test_tsdae_reconstruction_loss_falls_on_a_seeded_tiny_run():
    from tailor.train.adapt import build_tsdae_decoder, fit_tsdae, held_out_tsdae_loss
    from tailor.train.batching import encode
    from tailor.train.progress import RecordingReporter

    texts = [text for text, _ in sample_rows(SAMPLE_TRAIN)[:24]]
    tokenizer, encoder = minilm()
    decoder = build_tsdae_decoder(encoder, seed=0)
    train, held = texts[:16], texts[16:]
    train_enc, held_enc = encode(tokenizer, train, 24), encode(tokenizer, held, 24)
    shared = {"pad_id": tokenizer.pad_token_id, "ratio": 0.6, "max_length": 24, "device": "cpu"}
    before = held_out_tsdae_loss(encoder, decoder, tokenizer, held, held_enc, batch_size=8, **shared)
    taken = fit_tsdae(encoder, decoder, tokenizer, train, train_enc, steps=6, lr=1e-3, batch_size=8, seed=0,
                      reporter=RecordingReporter(), **shared)
    after = held_out_tsdae_loss(encoder, decoder, tokenizer, held, held_enc, batch_size=8, **shared)
    assert (taken, before, after) == (6, pytest.approx(11.1685, abs=2e-3), pytest.approx(7.4231, abs=2e-3))


def test_simcse_is_refused_when_the_base_already_tells_the_texts_apart(fresh_home, tmp_path):
    from tailor.train.adapt import run_adaptation

    with pytest.raises(UsageError) as info:
        run_adaptation(corpus_file(tmp_path, 600), name="tweets-simcse", objective="simcse", steps=2, batch_size=8,
                       max_length=32)
    assert str(info.value) == ("the base's held-out SimCSE loss on this corpus is already 0.0000 (under 0.01): it "
                               "tells these texts apart, so SimCSE could only add noise; use --objective tsdae")
    assert not (fresh_home / "bases" / "default" / "tweets-simcse").exists()


def test_simcse_runs_where_its_loss_is_not_saturated(fresh_home, tmp_path):
    from tailor.train.adapt import run_adaptation

    result = run_adaptation(corpus_file(tmp_path, 600), name="tweets-simcse", objective="simcse", steps=2,
                            batch_size=8, max_length=32, temperature=1.0)
    record = result.record
    assert (record["objective"], record["steps"], record["options"]["temperature"]) == ("simcse", 2, 1.0)
    assert record["held_out_loss"] == pytest.approx({"before": 1.4048, "after": 1.3645}, abs=2e-3)


def test_the_cli_offers_the_library_objectives():
    from tailor import cli_adapt
    from tailor.train import adapt

    assert (cli_adapt.OBJECTIVES, cli_adapt.DEFAULT_OBJECTIVE) == (adapt.OBJECTIVES, adapt.DEFAULT_OBJECTIVE)


def test_adapted_base_is_stored_and_a_later_job_trains_on_it(fresh_home, tmp_path, small_train_csv):
    import numpy as np

    import tailor
    from tailor.catalog import resolve_base
    from tailor.train.adapt import list_adapted
    from transformers import AutoModel

    result = tailor.adapt(corpus_file(tmp_path, 600), base="minilm-l6", name="tweets-minilm", steps=3,
                          batch_size=8, max_length=32)
    assert result.base == "adapted:default/tweets-minilm"
    record = result.record
    assert (record["parent"], record["objective"], record["steps"], record["corpus"]) == (
        "minilm-l6", "tsdae", 3, {"path": str(tmp_path / "corpus.csv"), "texts": 600, "held_out": 30})
    # the decoder's cross-attention starts untrained: the reconstruction loss starts near ln(vocabulary)
    assert record["held_out_loss"] == pytest.approx({"before": 10.9113, "after": 10.6347}, abs=2e-3)
    assert sorted(record) == ["caution", "corpus", "held_out_loss", "max_length", "name", "objective", "options",
                              "parent", "seconds", "seed", "steps", "tenant"]
    assert record["caution"].startswith("measured on medical abstracts (2,217 texts, minilm-l6): a head on 8 "
                                        "labels per class scored lower on the adapted base")
    assert [r["name"] for r in list_adapted("default")] == ["tweets-minilm"]
    assert list_adapted("other") == []

    adapted = resolve_base(result.base)
    original = AutoModel.from_pretrained(resolve_base("minilm-l6").path).state_dict()
    changed = AutoModel.from_pretrained(adapted.path).state_dict()
    assert not np.allclose(original["embeddings.word_embeddings.weight"].numpy(),
                           changed["embeddings.word_embeddings.weight"].numpy())

    with pytest.raises(UsageError) as info:
        tailor.adapt(corpus_file(tmp_path, 600), name="tweets-minilm")
    assert str(info.value) == ("adapted base 'tweets-minilm' already exists for tenant 'default'; choose another "
                               "name")

    trained = tailor.fine_tune(small_train_csv, name="on-adapted", base="tweets-minilm", method="head", seed=0)
    assert trained.version.base_model == "adapted:default/tweets-minilm"
    loaded = tailor.load_model("on-adapted:1", runtime="torch-fp32")
    assert [p.label for p in loaded.predict(["Shares plunge after the profit warning"])][0] in loaded.labels
