import pytest

from tailor.data.chat import ChatExample, encode_chat
from tailor.eval.generation import (compare_losses, evaluate_chat, format_chat_eval_text, label_metrics,
                                    looks_like_labels, prompt_and_reference, render_chat_eval_html,
                                    sample_generations)
from tailor.models.causal import Generation
from tiny_chat import build_tiny_chat_model, review_conversations


class ScriptedChat:
    """A stand-in chat model that answers from a dict (prompt text -> answer)."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.model = object()  # no disable_adapter: the "base" answers the same

    def generate(self, messages, max_tokens=64, **_):
        text = self.answers[messages[-1]["content"]]
        return Generation(text, "stop", 3, 1)


def _example(question: str, answer: str) -> ChatExample:
    return ChatExample([{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


def test_short_label_detection():
    assert looks_like_labels(["positive", "negative", " positive "])
    assert not looks_like_labels(["this answer is much longer than five words"])
    assert not looks_like_labels([f"label {i}" for i in range(21)])
    assert not looks_like_labels([])


def test_prompt_is_everything_before_the_last_reply():
    example = ChatExample([{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                           {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                           {"role": "assistant", "content": "d"}])
    prompt, reference = prompt_and_reference(example)
    assert [m["content"] for m in prompt] == ["s", "a", "b", "c"] and reference == "d"


def test_label_metrics_score_exact_matches():
    examples = [_example("q1", "yes"), _example("q2", "no"), _example("q3", "yes"), _example("q4", "no")]
    chat = ScriptedChat({"q1": "yes", "q2": " no\n", "q3": "no", "q4": "maybe"})
    metrics = label_metrics(chat, examples)
    assert metrics["n"] == 4 and metrics["accuracy"] == 0.5
    assert set(metrics["per_class"]) == {"maybe", "no", "yes"}
    assert metrics["per_class"]["yes"]["recall"] == 0.5
    assert label_metrics(chat, [_example("q1", "a long free-text answer of many words")]) is None


def test_samples_pair_base_and_tuned_answers():
    chat = ScriptedChat({"q1": "one", "q2": "two"})
    samples = sample_generations(chat, [_example("q1", "1"), _example("q2", "2")], n=1)
    assert samples == [{"prompt": "q1", "reference": "1", "base": "one", "tuned": "one"}]


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory):
    from tailor.models.causal import ChatModel, load_causal_lm
    from tailor.train.sft import build_lora_model, load_chat_preset

    directory = build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"))
    model, tokenizer = load_causal_lm(directory)
    model = build_lora_model(model, load_chat_preset("fast", base=str(directory)))
    return ChatModel(model, tokenizer, name="tiny")


def test_base_and_tuned_losses_differ_only_through_the_adapter(tiny_lora):
    import torch

    examples = [ChatExample(r["messages"]) for r in review_conversations(6)]
    encoded = encode_chat(tiny_lora.tokenizer, examples, 64)
    pad = tiny_lora.tokenizer.pad_token_id
    fresh = compare_losses(tiny_lora.model, encoded, pad, "cpu")
    assert fresh["base"] == fresh["tuned"] and fresh["loss_change"] == 0.0  # LoRA's B starts at zero
    assert fresh["tuned"]["tokens"] == 12
    with torch.no_grad():
        for name, p in tiny_lora.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    moved = compare_losses(tiny_lora.model, encoded, pad, "cpu")
    assert moved["base"] == fresh["base"] and moved["tuned"]["loss"] != fresh["base"]["loss"]
    assert moved["loss_change"] == round(moved["tuned"]["loss"] - moved["base"]["loss"], 5)

    evaluation = evaluate_chat(tiny_lora, examples, encoded, samples=2, sample_max_tokens=3)
    assert evaluation["examples"] == 6 and len(evaluation["samples"]) == 2
    assert evaluation["labels"]["n"] == 6  # positive/negative answers are short labels
    text = format_chat_eval_text(evaluation)
    assert text.splitlines()[0] == "held-out conversations: 6 (12 assistant tokens)"
    html = render_chat_eval_html(evaluation)
    assert "Held-out loss (assistant tokens)" in html and "Sample answers (greedy)" in html
