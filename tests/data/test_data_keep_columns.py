"""Reading one more named column (a slice column such as region) beside the text and the label."""

import pytest

from tailor.data.ingest import read_dataset
from tailor.errors import DataError


def test_a_kept_column_is_read_per_row_and_follows_a_subset(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("text,label,region\ngood,pos,north\nbad,neg,\nfine,pos,south\n", encoding="utf-8")
    ds = read_dataset(path, keep_columns=("region",))
    assert ds.columns == {"region": ["north", "", "south"]}
    assert ds.subset([2, 0]).columns == {"region": ["south", "north"]}
    assert read_dataset(path).columns == {}


def test_jsonl_keeps_numbers_as_text_and_a_missing_key_as_empty(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "a", "label": "x", "age": 41}\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    assert read_dataset(path, keep_columns=("age",)).columns == {"age": ["41", ""]}


def test_a_missing_column_is_named_with_the_columns_there(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("text,label,region\ngood,pos,north\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_dataset(path, keep_columns=("regionx",))
    assert str(caught.value) == f"no column 'regionx' in {path} (columns: text, label, region)"
    assert caught.value.field == "regionx"
