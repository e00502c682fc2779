"""Reading CSV, TSV and JSONL files: formats, encodings, column guessing and every refusal."""

import hashlib
import os
import threading

import pytest

from tailor.data.dataset import SourceInfo
from tailor.data.ingest import read_dataset
from tailor.errors import DataError, UsageError

SMALL_LIMIT = 10_486  # 0.01 MiB


def write(tmp_path, name: str, content: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return str(path)


def data_error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_dataset(path, **kwargs)
    return str(info.value)


def test_csv_round_trip_with_multiline_field_and_blank_line(tmp_path):
    content = 'text,label\nhello,a\n"multi\nline, quoted",b\n\nlast,c\n'
    path = write(tmp_path, "d.csv", content)
    ds = read_dataset(path)
    assert ds.texts == ["hello", "multi\nline, quoted", "last"]
    assert ds.labels == ["a", "b", "c"]
    assert ds.lines == [2, 3, 6]
    assert ds.source == SourceInfo(path=path, format="csv", encoding="utf-8",
                                   sha256=hashlib.sha256(content.encode()).hexdigest(),
                                   text_col="text", label_col="label", rows_read=3)


def test_tsv_by_extension_and_by_sniffing(tmp_path):
    content = "label\ttext\npos\tgreat, really great\nneg\tbad \"quoted\" word\n"
    for name in ("d.tsv", "d.txt"):
        ds = read_dataset(write(tmp_path, name, content))
        assert ds.source.format == "tsv"
        assert ds.texts == ["great, really great", 'bad "quoted" word']
        assert ds.labels == ["pos", "neg"]


def test_jsonl_values_and_line_numbers(tmp_path):
    content = ('{"text": "a", "label": 1}\n\n{"text": "b", "label": true}\n'
               '{"text": "c", "label": null}\n{"text": "d"}\n{"text": 5, "label": 2.5}\n')
    for name in ("d.jsonl", "d.ndjson", "d.data"):
        ds = read_dataset(write(tmp_path, name, content))
        assert ds.source.format == "jsonl"
        assert ds.texts == ["a", "b", "c", "d", "5"]
        assert ds.labels == ["1", "True", "", "", "2.5"]
        assert ds.lines == [1, 3, 4, 5, 6]


def test_utf8_bom_is_detected_and_not_part_of_the_header(tmp_path):
    ds = read_dataset(write(tmp_path, "d.csv", "\ufefftext,label\ncafé,a\nnaïve,b\n".encode("utf-8")))
    assert ds.source.encoding == "utf-8-sig"
    assert ds.source.text_col == "text"
    assert ds.texts == ["café", "naïve"]


def test_gbk_export_decodes_exactly(tmp_path):
    content = "内容,类别\n我的快递到哪里了？,物流\n发票怎么开，谢谢,财务\n"
    ds = read_dataset(write(tmp_path, "d.csv", content.encode("gbk")), text_col="内容", label_col="类别")
    assert ds.source.encoding == "gb18030"
    assert ds.texts == ["我的快递到哪里了？", "发票怎么开，谢谢"]
    assert ds.labels == ["物流", "财务"]


def test_bytes_valid_in_neither_encoding_name_the_line(tmp_path):
    path = write(tmp_path, "d.csv", b"text,label\nok,a\nbad \xff byte,b\n")
    assert data_error(path) == "line 3: the file is not valid UTF-8 or GB18030 text (byte 0xff); re-save it as UTF-8"


def test_invalid_utf8_after_a_bom_is_not_retried_as_gb18030(tmp_path):
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbftext,label\n\xd6\xd0,a\n")
    assert data_error(path) == "line 2: the file is not valid UTF-8 text (byte 0xd6); re-save it as UTF-8"


@pytest.mark.parametrize("header, text_col, label_col", [
    ("Review,Sentiment,id", "Review", "Sentiment"),
    ("id,utterance,INTENT", "utterance", "INTENT"),
    ("title,body,topic", "body", "topic"),
    ("sms,label", "sms", "label"),
    ("text,kind", "text", "kind"),
])
def test_columns_are_guessed_from_known_names(tmp_path, header, text_col, label_col):
    row = ",".join(f"v{i}" for i in range(header.count(",") + 1))
    ds = read_dataset(write(tmp_path, "d.csv", f"{header}\n{row}\n"))
    assert (ds.source.text_col, ds.source.label_col) == (text_col, label_col)


def test_two_unknown_columns_longer_one_is_text(tmp_path):
    ds = read_dataset(write(tmp_path, "d.csv", "kind,sms\nham,see you at six tonight\nspam,WIN a prize now!!!\n"))
    assert (ds.source.text_col, ds.source.label_col) == ("sms", "kind")
    assert ds.texts == ["see you at six tonight", "WIN a prize now!!!"]


def test_ambiguous_columns_ask_for_flags(tmp_path):
    message = ("cannot tell which columns hold the text and the label (columns: id, a, b); "
               "pass --text-col and --label-col")
    assert data_error(write(tmp_path, "d.csv", "id,a,b\n1,x,y\n")) == message
    equal = "cannot tell which columns hold the text and the label (columns: a, b); pass --text-col and --label-col"
    assert data_error(write(tmp_path, "e.csv", "a,b\nxy,zw\n")) == equal


def test_given_columns_are_used_and_missing_ones_refused(tmp_path):
    path = write(tmp_path, "d.csv", "text,label,note\nhello,a,n1\n")
    ds = read_dataset(path, text_col="note", label_col="text")
    assert (ds.texts, ds.labels) == (["n1"], ["hello"])
    with pytest.raises(DataError) as info:
        read_dataset(path, text_col="foo")
    assert str(info.value) == "column 'foo' not found; columns are: text, label, note"
    assert info.value.field == "foo"


def test_empty_text_and_label_rows_are_kept(tmp_path):
    ds = read_dataset(write(tmp_path, "d.csv", "text,label\n,a\nhello,\n  ,  \n"))
    assert ds.texts == ["", "hello", "  "]
    assert ds.labels == ["a", "", "  "]


@pytest.mark.parametrize("name, content, message", [
    ("d.csv", "", "file is empty"),
    ("d.csv", "\n\n\n", "file is empty"),
    ("d.jsonl", "\n  \n", "file is empty"),
    ("d.csv", "text,label\n", "no data rows after the header"),
    ("d.csv", "text,label\n\n\n", "no data rows after the header"),
    ("d.csv", "text,text\nx,y\n", "line 1: column 'text' appears more than once in the header"),
    ("d.json", '[{"text": "a", "label": "b"}]',
     "the file looks like a JSON array; write one JSON object per line (JSON Lines)"),
    ("d.jsonl", '{"text": "a", "label": "b"}\n[1, 2]\n', "line 2: expected a JSON object, found list"),
    ("d.jsonl", '{"text": ["a"], "label": "b"}\n', "line 1: 'text' holds a JSON list; expected text or a number"),
])
def test_malformed_files_are_refused(tmp_path, name, content, message):
    assert data_error(write(tmp_path, name, content)) == message


def test_jsonl_bad_line_names_its_line(tmp_path):
    good = '{"text": "t", "label": "l"}\n'
    content = good * 3 + "\n" + good * 2 + "{oops\n" + good
    assert data_error(write(tmp_path, "d.jsonl", content)) == "line 7: not valid JSON (Expecting property name " \
                                                                "enclosed in double quotes)"
    content = good * 6 + "not json\n"
    assert data_error(write(tmp_path, "e.jsonl", content)) == "line 7: not valid JSON (Expecting value)"


def test_wrong_field_count_names_the_row_start_line(tmp_path):
    rows = ["text,label", '"two\nlines",a'] + [f"row {i},a" for i in range(8)] + ["one,two,three"]
    path = write(tmp_path, "d.csv", "\n".join(rows) + "\n")
    assert data_error(path) == "line 12: expected 2 fields, found 3"


def test_missing_file_and_directory(tmp_path):
    assert data_error(str(tmp_path / "nope.csv")) == f"file not found: {tmp_path / 'nope.csv'}"
    assert data_error(str(tmp_path)) == f"{tmp_path} is a directory, not a file"


@pytest.mark.parametrize("junk", [b"PK\x03\x04\x00\x00binary", bytes(range(1, 9)) * 200])
def test_binary_files_are_refused(tmp_path, junk):
    path = write(tmp_path, "d.csv", junk)
    assert data_error(path) == f"{path} looks like a binary file, not CSV/TSV/JSONL"


def test_utf16_is_named(tmp_path):
    path = write(tmp_path, "d.tsv", "text\tlabel\nhello\ta\n".encode("utf-16"))
    assert data_error(path) == "the file is UTF-16 text; re-save it as UTF-8"


def test_size_limit_from_argument_and_settings(tmp_path, monkeypatch):
    path = write(tmp_path, "d.csv", "text,label\n" + "some text,a\n" * 1800)  # 21,611 bytes
    message = "the file is 0.02 MiB, over the limit of 0.01 MiB (set TAILOR_MAX_FILE_MB to raise it)"
    assert data_error(path, max_bytes=SMALL_LIMIT) == message
    monkeypatch.setenv("TAILOR_MAX_FILE_MB", "0.01")
    assert data_error(path) == message
    assert len(read_dataset(path, max_bytes=30_000)) == 1800


def _fifo_with(tmp_path, content: bytes) -> str:
    """A named pipe whose writer (a thread) sends ``content`` once a reader opens it."""
    path = str(tmp_path / "pipe.csv")
    os.mkfifo(path)

    def feed():
        try:
            with open(path, "wb") as pipe:
                pipe.write(content)
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    return path


def test_pipe_is_read_and_its_bytes_are_counted(tmp_path):
    ds = read_dataset(_fifo_with(tmp_path, b"text,label\nhello,a\n"))
    assert (ds.texts, ds.labels, ds.source.format) == (["hello"], ["a"], "csv")


def test_pipe_over_the_limit_is_stopped_while_streaming(tmp_path):
    path = _fifo_with(tmp_path, b"text,label\n" + b"some text,a\n" * 1800)
    message = "the file is larger than the limit of 0.01 MiB (set TAILOR_MAX_FILE_MB to raise it)"
    assert data_error(path, max_bytes=SMALL_LIMIT) == message


def test_format_override(tmp_path):
    path = write(tmp_path, "d.tsv", "text,label\nhello,a\n")
    assert read_dataset(path, fmt="csv").texts == ["hello"]
    with pytest.raises(UsageError) as info:
        read_dataset(path, fmt="xlsx")
    assert str(info.value) == "unknown format 'xlsx'; use one of: csv, tsv, jsonl"
