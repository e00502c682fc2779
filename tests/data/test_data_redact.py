"""Personal-data redaction: each kind's exact placeholder, the text around it untouched, the cleaned dataset
and data report of redacted rows, and ``tailor data check --redact-pii``."""

from __future__ import annotations

import json

import pytest

from tailor.data.clean import clean_dataset
from tailor.data.dataset import TextDataset
from tailor.data.pii import PLACEHOLDERS, pii_spans, redact, redact_texts
from tailor.data.report import build_data_report, format_data_report_text

from samples import sample_rows, write_csv

NONE = {"email": 0, "phone": 0, "card_number": 0, "id_number": 0, "iban": 0}


@pytest.mark.parametrize("text, redacted, kind", [
    ("write to john.doe+tag@example.co.uk today", "write to [EMAIL] today", "email"),
    ("card 4111 1111 1111 1111 expired", "card [CARD] expired", "card_number"),
    ("amex 378282246310005.", "amex [CARD].", "card_number"),
    ("call +1 415 555 2671 now", "call [PHONE] now", "phone"),
    ("call (555) 123-4567", "call [PHONE]", "phone"),
    ("我的手机是13812345678谢谢", "我的手机是[PHONE]谢谢", "phone"),
    ("SSN 123-45-6789", "SSN [ID]", "id_number"),
    ("身份证11010519491231002X号", "身份证[ID]号", "id_number"),
    ("IBAN GB82 WEST 1234 5698 7654 32, thanks", "IBAN [IBAN], thanks", "iban"),
    ("IBAN DE89370400440532013000.", "IBAN [IBAN].", "iban"),
])
def test_each_kind_becomes_its_placeholder(text, redacted, kind):
    assert redact(text) == (redacted, {**NONE, kind: 1})


def test_look_alikes_and_clean_text_are_left_exactly_as_they_are():
    for text in ("card 4111 1111 1111 1112", "on 2023-01-15 at 10:30", "ID 110105194912310021",
                 "user@localhost is not an address", "  spaces kept\tand tabs  ", ""):
        assert redact(text) == (text, NONE)


def test_spans_are_offsets_into_the_original_and_everything_between_them_is_kept():
    text = "Mail ann@corp.com, card 5500-0000-0000-0004 or +44 20 7946 0958; SSN 123-45-6789 (ok)"
    spans = sorted(pii_spans(text))
    assert [(text[start:end], kind) for start, end, kind in spans] == [
        ("ann@corp.com", "email"), ("5500-0000-0000-0004", "card_number"), ("+44 20 7946 0958", "phone"),
        ("123-45-6789", "id_number")]
    assert spans[0][:2] == (5, 17)
    redacted, counts = redact(text)
    assert redacted == "Mail [EMAIL], card [CARD] or [PHONE]; SSN [ID] (ok)"
    assert counts == {"email": 1, "phone": 1, "card_number": 1, "id_number": 1, "iban": 0}
    # rebuilt from the original text's pieces between the spans: no other character moved or changed
    pieces, position = [], 0
    for start, end, kind in spans:
        pieces += [text[position:start], PLACEHOLDERS[kind]]
        position = end
    assert "".join(pieces + [text[position:]]) == redacted
    assert redact(redacted) == (redacted, NONE)  # placeholders are not personal data themselves


def test_redact_texts_counts_kinds_and_rows():
    texts, counts = redact_texts(["a@b.io and c@d.org", "nothing here", "call 555-123-4567"])
    assert texts == ["[EMAIL] and [EMAIL]", "nothing here", "call [PHONE]"]
    assert counts == {**NONE, "email": 2, "phone": 1, "rows_redacted": 2}


def dataset(rows, lines=None) -> TextDataset:
    return TextDataset(texts=[t for t, _ in rows], labels=[label for _, label in rows],
                       lines=lines or list(range(2, len(rows) + 2)))


def test_the_cleaned_dataset_and_its_report_are_redacted():
    rows = [("refund to ann@corp.com please", "billing"), ("refund to bob@corp.com please", "billing"),
            ("card 4111 1111 1111 1111 was charged twice", "billing"), ("the app crashes at login", "bug"),
            ("the app crashes when I call +1 415 555 2671", "bug"), ("IBAN DE89370400440532013000 is wrong", "billing")]
    eval_rows = [("the app crashes when I call +1 212 555 0199", "bug")]
    raw = dataset(rows)
    cleaned = clean_dataset(raw, max_chars=1000, eval_ds=dataset(eval_rows), redact_pii=True)
    assert cleaned.dataset.texts == ["refund to [EMAIL] please", "card [CARD] was charged twice",
                                     "the app crashes at login", "IBAN [IBAN] is wrong"]
    assert cleaned.redacted == {"email": 2, "phone": 1, "card_number": 1, "id_number": 0, "iban": 1,
                                "rows_redacted": 5}
    # the two refunds differ only by their e-mail: the same row once redacted; the phone row repeats the
    # evaluation row once both are redacted
    assert cleaned.removed["duplicate_exact"] == 1 and cleaned.removed["leaked_into_eval"] == 1
    assert cleaned.examples["duplicate_exact"] == [{"line": 3, "text": "refund to [EMAIL] please", "label": "billing"}]
    report = build_data_report(raw, cleaned, find_issues=False)
    assert report["redacted"] == cleaned.redacted
    assert report["pii"] == {**NONE, "rows_with_pii": 0}
    assert not any("personal data" in warning for warning in report["warnings"])
    assert ("Personal data redacted: e-mail 2, phone 1, card number 1, ID number 0, IBAN 1 replaced in 5 rows"
            in format_data_report_text(report).splitlines())
    assert "ann@corp.com" not in json.dumps(report)

    plain = clean_dataset(raw, max_chars=1000)
    assert plain.redacted is None and plain.dataset.texts[0] == "refund to ann@corp.com please"


def test_data_check_redacts_with_the_flag(tmp_path, capsys):
    from tailor.cli import main

    path = write_csv(tmp_path / "d.csv", sample_rows(per_label=10) + [
        ("mail me at a.b@example.com", "neutral"), ("my card 4111-1111-1111-1111 is blocked", "bearish")])
    assert main(["data", "check", str(path), "--no-tokens", "--redact-pii", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["redacted"] == {"email": 1, "phone": 0, "card_number": 1, "id_number": 0, "iban": 0,
                                  "rows_redacted": 2}
    assert report["pii"]["rows_with_pii"] == 0
    assert main(["data", "check", str(path), "--no-tokens", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["redacted"] is None and report["pii"]["email"] == 1


def test_chat_conversations_are_redacted_message_by_message(tmp_path):
    from tailor.settings import Settings
    from tailor.train.chat_job import _load

    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [
        {"role": "system", "content": "You answer the bank's customers."},
        {"role": "user", "content": "My card 4111 1111 1111 1111 is blocked, mail me at ann@corp.com"},
        {"role": "assistant", "content": "We unblocked it and wrote to ann@corp.com."}]}) + "\n", encoding="utf-8")
    settings = Settings(home=tmp_path)
    redacted = _load(path, settings, redact_pii=True)
    assert [m["content"] for m in redacted.examples[0].messages] == [
        "You answer the bank's customers.", "My card [CARD] is blocked, mail me at [EMAIL]",
        "We unblocked it and wrote to [EMAIL]."]
    assert [m["role"] for m in redacted.examples[0].messages] == ["system", "user", "assistant"]
    assert _load(path, settings).examples[0].messages[2]["content"] == "We unblocked it and wrote to ann@corp.com."
