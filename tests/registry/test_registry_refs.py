import pytest

from tailor.errors import UsageError
from tailor.registry.refs import ModelRef, parse_ref, validate_alias, validate_name, validate_tenant

FT_ID = "ft:minilm-l6:acme:suffix:ftjob-abc123"


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("credit-risk", ModelRef("credit-risk")),
        ("credit-risk@latest", ModelRef("credit-risk")),
        ("credit-risk:3", ModelRef("credit-risk", version=3)),
        ("credit-risk:12", ModelRef("credit-risk", version=12)),
        ("credit-risk@production", ModelRef("credit-risk", alias="production")),
        ("v2.1_final", ModelRef("v2.1_final")),
        ("0-day", ModelRef("0-day")),
        ("a" * 64, ModelRef("a" * 64)),
        (FT_ID, ModelRef(FT_ID)),
        (f"{FT_ID}:2", ModelRef(FT_ID, version=2)),
        (f"{FT_ID}@canary", ModelRef(FT_ID, alias="canary")),
        ("ft:minilm-l6:acme::ftjob-1", ModelRef("ft:minilm-l6:acme::ftjob-1")),
    ],
)
def test_parse_ref_accepts(ref, expected):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "Credit-risk",
        "credit risk",
        " credit-risk",
        "-credit",
        ".hidden",
        "a" * 65,
        "credit-risk:0",
        "credit-risk:03",
        "credit-risk:",
        "credit-risk:v2",
        "credit-risk@",
        "credit-risk@Prod",
        "credit-risk@1st",
        "credit-risk@" + "a" * 33,
        "credit-risk:1@prod",
        "a@b@c",
        "a:b",
        "../etc",
        "ft:",
        "ft:m:acme:",
    ],
)
def test_parse_ref_rejects(ref):
    with pytest.raises(UsageError) as caught:
        parse_ref(ref)
    assert str(caught.value) == (
        f"invalid model reference {ref!r}: expected NAME, NAME:VERSION or NAME@ALIAS "
        "(e.g. credit-risk, credit-risk:3, credit-risk@production, credit-risk@latest)"
    )


@pytest.mark.parametrize("name", ["credit-risk", "m", "a" * 64, FT_ID, "ft:minilm-l6:acme::ftjob-1", "ft:x"])
def test_validate_name_accepts(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Upper", "a:b", "a" * 65, "ft:", "ft:m:acme:7", "ft:" + "a" * 200, "x/y"])
def test_validate_name_rejects(name):
    with pytest.raises(UsageError) as caught:
        validate_name(name)
    assert str(caught.value) == (
        f"invalid model name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    )


@pytest.mark.parametrize("alias", ["production", "a", "canary-2", "blue_green", "a" * 32])
def test_validate_alias_accepts(alias):
    assert validate_alias(alias) == alias


def test_latest_alias_is_reserved():
    with pytest.raises(UsageError) as caught:
        validate_alias("latest")
    assert str(caught.value) == "alias 'latest' is reserved: it always means the highest version"


@pytest.mark.parametrize("alias", ["", "Prod", "1st", "-x", "a" * 33, "a.b"])
def test_validate_alias_rejects(alias):
    with pytest.raises(UsageError) as caught:
        validate_alias(alias)
    assert str(caught.value) == (
        f"invalid alias {alias!r}: use 1-32 lowercase letters, digits, '_' or '-', starting with a letter"
    )


@pytest.mark.parametrize("tenant", ["default", "Acme-1", "team.ml_2"])
def test_validate_tenant_accepts(tenant):
    assert validate_tenant(tenant) == tenant


@pytest.mark.parametrize("tenant", ["", ".", "..", "../x", "a/b", "a" * 65])
def test_validate_tenant_rejects(tenant):
    with pytest.raises(UsageError) as caught:
        validate_tenant(tenant)
    assert str(caught.value) == f"invalid tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'"
