"""Personal-data detection: each kind with positives, look-alikes that must not match, and the counts."""

import pytest

from tailor.data.pii import count_pii, find_pii, iban_valid, luhn_valid


@pytest.mark.parametrize("text, kind, match", [
    ("write to john.doe+tag@example.co.uk today", "email", "john.doe+tag@example.co.uk"),
    ("card 4111 1111 1111 1111 expired", "card_number", "4111 1111 1111 1111"),
    ("card 5500-0000-0000-0004", "card_number", "5500-0000-0000-0004"),
    ("amex 378282246310005", "card_number", "378282246310005"),
    ("call +1 415 555 2671 now", "phone", "+1 415 555 2671"),
    ("call +44 20 7946 0958", "phone", "+44 20 7946 0958"),
    ("call (555) 123-4567", "phone", "(555) 123-4567"),
    ("call 555-123-4567", "phone", "555-123-4567"),
    ("我的手机是13812345678谢谢", "phone", "13812345678"),
    ("SSN 123-45-6789", "id_number", "123-45-6789"),
    ("身份证11010519491231002X", "id_number", "11010519491231002X"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN DE89370400440532013000.", "iban", "DE89370400440532013000"),
])
def test_each_kind_is_found(text, kind, match):
    found = find_pii(text)
    assert found[kind] == [match]
    assert sum(map(len, found.values())) == 1


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # fails the Luhn check
    "on 2023-01-15 at 10:30",  # a date and a time
    "order 1234567890123 shipped",  # 13 digits, Luhn-invalid
    "SSN 000-12-3456 and 666-12-3456",  # impossible SSN areas
    "ID 110105194912310021",  # wrong check character
    "IBAN DE89370400440532013001",  # wrong check digits
    "serial 213812345678901",  # a phone-like run inside a longer number
    "user@localhost is not an address",
    "version 1.2.3.4, room 101, year 1999",
])
def test_look_alikes_are_not_personal_data(text):
    assert find_pii(text) == {"email": [], "phone": [], "card_number": [], "id_number": [], "iban": []}


def test_one_number_counts_once():
    # The card pattern would also try the ID's 17-digit run; masking after each detector prevents it.
    assert find_pii("11010519491231002X")["id_number"] == ["11010519491231002X"]
    assert find_pii("+86 138 1234 5678") == {"email": [], "phone": ["+86 138 1234 5678"], "card_number": [],
                                             "id_number": [], "iban": []}
    # an IBAN's digits are not also read as a card number or a phone
    assert find_pii("pay to DE89 3704 0044 0532 0130 00") == {"email": [], "phone": [], "card_number": [],
                                                              "id_number": [], "iban": ["DE89 3704 0044 0532 0130 00"]}


def test_count_pii_counts_matches_and_rows():
    texts = ["mail a@b.io or c@d.org", "no personal data here", "call 555-123-4567, card 4111111111111111",
             "ID 123-45-6789, IBAN NL91 ABNA 0417 1643 00"]
    assert count_pii(texts) == {"email": 2, "phone": 1, "card_number": 1, "id_number": 1, "iban": 1,
                                "rows_with_pii": 3}
    assert count_pii([]) == {"email": 0, "phone": 0, "card_number": 0, "id_number": 0, "iban": 0,
                             "rows_with_pii": 0}


def test_check_digit_helpers():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert iban_valid("NL91 ABNA 0417 1643 00") and not iban_valid("NL91 ABNA 0417 1643 01")
    assert not iban_valid("NL91 ABNA")  # too short
