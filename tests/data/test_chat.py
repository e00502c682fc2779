import json

import pytest

from tailor.data.chat import (IGNORE_INDEX, ChatDataset, ChatExample, LengthFit, build_chat_report,
                              encode_chat, encode_conversation, fit_chat_lengths, format_chat_report_text,
                              read_chat_dataset, render_chat_report_html, sniff_chat_format, token_limit,
                              validate_chat_file)
from tailor.errors import DataError
from tiny_chat import build_tiny_chat_model, review_conversations, write_jsonl

HELLO = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tailor.models.causal import load_chat_tokenizer

    return load_chat_tokenizer(build_tiny_chat_model(tmp_path_factory.mktemp("tiny")))


def test_reads_openai_chat_format(tmp_path):
    ds = read_chat_dataset(write_jsonl(tmp_path / "c.jsonl", review_conversations(4)))
    assert len(ds) == 4
    assert (ds.source.format, ds.source.rows_read) == ("chat", 4)
    assert [e.line for e in ds.examples] == [1, 2, 3, 4]
    assert [m["role"] for m in ds.examples[0].messages] == ["system", "user", "assistant"]


def test_instruction_format_joins_instruction_and_input(tmp_path):
    path = write_jsonl(tmp_path / "i.jsonl", [{"instruction": "Translate", "input": "bonjour", "output": "hello"},
                                              {"instruction": "Say hi", "input": "", "output": "hi"}])
    ds = read_chat_dataset(path)
    assert ds.source.format == "instruction"
    assert ds.examples[0].messages == [{"role": "user", "content": "Translate\n\nbonjour"},
                                       {"role": "assistant", "content": "hello"}]
    assert ds.examples[1].messages[0] == {"role": "user", "content": "Say hi"}


@pytest.mark.parametrize("line, message, field", [
    ("{not json", "line 2: not valid JSON (Expecting property name enclosed in double quotes)", None),
    ("[1, 2]", "line 2: expected a JSON object, found list", None),
    ('{"text": "x"}', "line 2: missing 'messages' (the file is in chat format)", "messages"),
    ('{"messages": [{"role": "bot", "content": "x"}]}',
     "line 2: messages[0].role is 'bot'; allowed roles are system, user, assistant", "messages[0].role"),
    ('{"messages": [{"role": "user", "content": "x"}]}',
     "line 2: no assistant message: nothing to learn from this conversation", "messages"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]}',
     "line 2: messages[1].content is empty", "messages[1].content"),
    ('{"messages": []}', "line 2: 'messages' must be a non-empty list of {role, content} objects", "messages"),
])
def test_line_errors_name_the_line_and_field(tmp_path, line, message, field):
    path = write_jsonl(tmp_path / "bad.jsonl", [HELLO, line, HELLO])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert str(info.value) == message
    assert (info.value.line, info.value.field) == (2, field)


def test_every_bad_line_is_counted_and_the_first_named(tmp_path):
    rows = [HELLO] + ["{bad"] * 25 + [HELLO]
    with pytest.raises(DataError) as info:
        read_chat_dataset(write_jsonl(tmp_path / "bad.jsonl", rows))
    assert str(info.value) == ("line 2: not valid JSON (Expecting property name enclosed in double quotes) "
                               "(and 24 more problems, at lines 3, 4, 5, 6, 7, ...)")
    assert len(info.value.problems) == 20 and info.value.total_problems == 25


def test_empty_and_unknown_format(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="^file is empty$"):
        read_chat_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(DataError) as info:
        read_chat_dataset(write_jsonl(tmp_path / "other.jsonl", [{"text": "a", "label": "b"}]))
    assert str(info.value) == ("no conversations found: expected JSON Lines with 'messages' (chat format) or "
                               "'instruction' and 'output' (instruction format); line 1: missing 'messages' (chat "
                               "format) or 'instruction' and 'output' (instruction format)")
    (tmp_path / "data.csv").write_text("text,label\nhello,greeting\n")
    with pytest.raises(DataError, match=r"^no conversations found: .*; line 1: not valid JSON \(Expecting value\)$"):
        read_chat_dataset(tmp_path / "data.csv")


def test_upload_check_sniffs_and_validates_without_a_tokenizer(tmp_path):
    chat = write_jsonl(tmp_path / "c.jsonl", review_conversations(3))
    inst = write_jsonl(tmp_path / "i.jsonl", [{"instruction": "a", "input": "", "output": "b"}])
    csv = tmp_path / "x.csv"
    csv.write_text("text,label\nhi,greeting\n")
    assert [sniff_chat_format(p) for p in (chat, inst, csv, tmp_path / "missing.jsonl")] == \
        ["chat", "instruction", None, None]
    result = validate_chat_file(chat)
    assert (result["format"], result["examples"], len(result["sha256"])) == ("chat", 3, 64)


def test_assistant_tokens_are_exactly_the_replies_and_end_of_turn(tokenizer):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the lamp is good"},
                {"role": "assistant", "content": "positive"}, {"role": "user", "content": "and the desk?"},
                {"role": "assistant", "content": "negative, sadly\nreally"}]
    ids, labels = encode_conversation(tokenizer, messages)
    assert len(ids) == len(labels)
    trained = [i for i, label in zip(ids, labels) if label != IGNORE_INDEX]
    assert all(label in (IGNORE_INDEX, i) for i, label in zip(ids, labels))
    assert tokenizer.decode(trained) == "positive<|im_end|>negative, sadly\nreally<|im_end|>"
    # the trained tokens are two contiguous runs, each ending with the end-of-turn token
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    runs, previous = [], False
    for k, label in enumerate(labels):
        if label != IGNORE_INDEX and not previous:
            runs.append([k])
        if label != IGNORE_INDEX:
            runs[-1].append(k)
        previous = label != IGNORE_INDEX
    assert len(runs) == 2 and all(ids[run[-1]] == end for run in runs)
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tokenize=False)


def _over_long_dataset() -> ChatDataset:
    """Lines 1 and 4 fit 64 tokens; 2 has a long question (no answer token within 64: dropped); 3 and 5 have
    long answers (truncated)."""
    short = HELLO["messages"]
    long_question = [{"role": "user", "content": "the lamp is good " * 40}, {"role": "assistant", "content": "positive"}]
    long_answer = [{"role": "user", "content": "describe the lamp"},
                   {"role": "assistant", "content": "the lamp is good and fine " * 20}]
    return ChatDataset([ChatExample(short, 1), ChatExample(long_question, 2), ChatExample(long_answer, 3),
                        ChatExample(short, 4), ChatExample(long_answer, 5)])


def test_over_long_conversations_are_truncated_or_dropped_and_their_lines_named(tokenizer):
    dataset = _over_long_dataset()
    kept, encoded, fit = fit_chat_lengths(dataset, tokenizer, 64)
    assert [e.line for e in kept.examples] == [1, 3, 4, 5]
    assert (fit.truncated, fit.dropped, fit.max_length) == ([3, 5], [2], 64)
    assert fit.summary() == {"max_length": 64, "truncated": {"count": 2, "lines": [3, 5]},
                             "dropped": {"count": 1, "lines": [2]}}
    assert fit.describe() == ("3 conversations over the 64-token limit: 2 truncated (lines 3, 5), 1 dropped, no "
                              "assistant token within the limit (line 2)")
    # a truncated conversation keeps its start, so the loss covers the answer tokens that fit
    full_ids, full_labels = encode_conversation(tokenizer, dataset.examples[2].messages)
    assert len(full_ids) > 64
    assert (encoded.input_ids[1], encoded.labels[1]) == (full_ids[:64], full_labels[:64])
    assert sum(t != IGNORE_INDEX for t in encoded.labels[1]) > 10
    assert encoded.input_ids[0] == encode_conversation(tokenizer, HELLO["messages"])[0]  # short ones untouched
    # the dropped one had no answer token within the limit
    assert all(t == IGNORE_INDEX for t in encode_conversation(tokenizer, dataset.examples[1].messages)[1][:64])
    assert LengthFit(64).describe() is None and fit_chat_lengths(dataset, tokenizer, 4096)[2].describe() is None


def test_strict_checking_refuses_over_long_conversations_with_their_lines(tokenizer):
    dataset = _over_long_dataset()
    n = [len(encode_conversation(tokenizer, e.messages)[0]) for e in dataset.examples]
    with pytest.raises(DataError) as info:
        fit_chat_lengths(dataset, tokenizer, 64, strict=True)
    assert str(info.value) == (f"line 2: {n[1]:,} tokens, {n[1] - 64:,} over the 64-token limit (and 2 more "
                               "problems, at lines 3, 5)")
    assert (info.value.line, info.value.field, info.value.total_problems) == (2, "messages", 3)
    assert len(fit_chat_lengths(dataset, tokenizer, 4096, strict=True)[0]) == 5


def test_a_file_with_nothing_left_within_the_limit_is_refused(tokenizer):
    dataset = ChatDataset([_over_long_dataset().examples[1]])
    with pytest.raises(DataError) as info:
        fit_chat_lengths(dataset, tokenizer, 32)
    assert str(info.value) == ("no conversation keeps an assistant token within the 32-token limit (1 conversation "
                               "over the 32-token limit: 1 dropped, no assistant token within the limit (line 2)); "
                               "raise max_length")


def test_the_token_limit_is_the_setting_capped_by_the_model_context(tokenizer):
    from tailor.models.causal import context_length

    assert context_length(tokenizer.name_or_path) == 512  # the tiny model's max_position_embeddings
    assert (token_limit(1024, 512), token_limit(256, 512), token_limit(1024, None)) == (512, 256, 1024)


def test_chat_report_counts_tokens_duplicates_and_estimates_time(tokenizer, tmp_path):
    rows = review_conversations(10)
    ds = read_chat_dataset(write_jsonl(tmp_path / "c.jsonl", rows + rows[:2]))
    encoded = encode_chat(tokenizer, ds.examples, 128)
    report = build_chat_report(ds, encoded, max_length=128, epochs=2, tokens_per_s=100.0, tokens_per_s_source="test")
    lengths = sorted(len(r) for r in encoded.input_ids)
    assert report["examples"] == 12 and report["duplicates"] == 2
    assert report["tokens"]["min"] == lengths[0] and report["tokens"]["max"] == lengths[-1]
    assert report["tokens"]["total"] == sum(lengths)
    assert report["assistant_tokens"]["total"] == encoded.trained_tokens() == 12 * 2  # label + end-of-turn
    assert report["estimate"]["seconds"] == round(sum(lengths) * 2 / 100.0, 1)
    assert report["warnings"] == ["only 12 conversations: expect little change from the base model",
                                  "2 duplicate conversations (they are trained on more than once)"]
    assert "conversations: 12 (chat format), duplicates 2" in format_chat_report_text(report)
    html = render_chat_report_html(report)
    assert html.startswith("<!doctype html>") and "Estimated training time" in html
    json.dumps(report)


def test_service_report_of_a_file_names_over_long_lines_and_hides_the_directory(tmp_path, tokenizer):
    from tailor.data.chat import SMOLLM2_CPU_TOKENS_PER_S, chat_report_for_file

    long_answer = {"messages": [{"role": "user", "content": "describe it"},
                                {"role": "assistant", "content": "the lamp is good " * 30}]}
    long_question = {"messages": [{"role": "user", "content": "the lamp is good " * 30},
                                  {"role": "assistant", "content": "positive"}]}
    rows = review_conversations(4) + [long_question, long_answer]
    path = write_jsonl(tmp_path / "upload-123.jsonl", rows)
    report = chat_report_for_file(path, base=tokenizer.name_or_path, max_length=64, epochs=1)
    assert report["source"]["path"] == "upload-123.jsonl"
    assert report["over_limit"] == {"max_length": 64, "truncated": {"count": 1, "lines": [6]},
                                    "dropped": {"count": 1, "lines": [5]}}
    assert report["examples"] == 5 and report["base_model"] == tokenizer.name_or_path
    assert report["tokens"]["max"] == 64 and report["max_length"] == 64
    assert report["estimate"]["seconds"] == round(report["tokens"]["total"] / SMOLLM2_CPU_TOKENS_PER_S, 1)
    text = format_chat_report_text(report)
    assert ("2 conversations over the 64-token limit: 1 truncated (line 6), 1 dropped, no assistant token within "
            "the limit (line 5)") in text.splitlines()
    assert "Over the token limit" in render_chat_report_html(report)
    json.dumps(report)
    # without a setting, the limit is the default preset's, capped by the model's context (512 here)
    assert chat_report_for_file(path, base=tokenizer.name_or_path)["over_limit"] == {
        "max_length": 512, "truncated": {"count": 0, "lines": []}, "dropped": {"count": 0, "lines": []}}


def test_shipped_chat_sample_is_valid():
    from importlib import resources

    folder = resources.files("tailor").joinpath("sample_data")
    train = read_chat_dataset(folder / "medquad_chat_train.jsonl")
    test = read_chat_dataset(folder / "medquad_chat_test.jsonl")
    assert (len(train), len(test)) == (200, 40)
    assert all(len(e.messages[-1]["content"]) <= 400 for e in train.examples + test.examples)
