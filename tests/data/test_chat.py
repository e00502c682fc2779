import json

import pytest

from tailor.data.chat import (IGNORE_INDEX, ChatDataset, ChatExample, build_chat_report, check_chat_lengths,
                              encode_chat, encode_conversation, format_chat_report_text, read_chat_dataset,
                              render_chat_report_html, sniff_chat_format, validate_chat_file)
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


def test_too_long_conversations_are_refused_with_counts(tokenizer):
    long = ChatExample([{"role": "user", "content": "the lamp is good " * 40},
                        {"role": "assistant", "content": "positive"}], line=12)
    n = len(encode_conversation(tokenizer, long.messages)[0])
    with pytest.raises(DataError) as info:
        check_chat_lengths(ChatDataset([ChatExample(HELLO["messages"], 1), long]), tokenizer, 64)
    assert str(info.value) == f"line 12: {n:,} tokens, {n - 64:,} over the 64-token limit"
    assert info.value.field == "messages"


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


def test_service_report_of_a_file_counts_over_long_lines_and_hides_the_directory(tmp_path, tokenizer):
    from tailor.data.chat import SMOLLM2_CPU_TOKENS_PER_S, chat_report_for_file

    rows = review_conversations(4) + [{"messages": [{"role": "user", "content": "the lamp is good " * 30},
                                                    {"role": "assistant", "content": "positive"}]}]
    path = write_jsonl(tmp_path / "upload-123.jsonl", rows)
    report = chat_report_for_file(path, base=tokenizer.name_or_path, max_length=64, epochs=1)
    assert report["source"]["path"] == "upload-123.jsonl"
    assert report["over_limit"] == {"count": 1, "lines": [5]}
    assert report["examples"] == 5 and report["base_model"] == tokenizer.name_or_path
    assert report["estimate"]["seconds"] == round(report["tokens"]["total"] / SMOLLM2_CPU_TOKENS_PER_S, 1)
    json.dumps(report)


def test_shipped_chat_sample_is_valid():
    from importlib import resources

    folder = resources.files("tailor").joinpath("sample_data")
    train = read_chat_dataset(folder / "medquad_chat_train.jsonl")
    test = read_chat_dataset(folder / "medquad_chat_test.jsonl")
    assert (len(train), len(test)) == (200, 40)
    assert all(len(e.messages[-1]["content"]) <= 400 for e in train.examples + test.examples)
