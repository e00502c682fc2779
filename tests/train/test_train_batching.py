from tailor.train.batching import Encoded, collate, length_grouped_batches


def test_every_row_appears_exactly_once():
    lengths = [(i * 37) % 50 + 1 for i in range(203)]
    batches = length_grouped_batches(lengths, 16, shuffle=True, seed=3, group_factor=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(203))
    assert all(len(b) <= 16 for b in batches)


def test_grouping_keeps_padding_small():
    lengths = [(i * 37) % 50 + 1 for i in range(640)]
    grouped = length_grouped_batches(lengths, 16, shuffle=True, seed=0, group_factor=10)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in grouped)
    # random batches would pad to ~48 tokens per row; grouped ones stay near the true mean of 25.5
    assert padded / sum(lengths) < 1.1


def test_shuffle_is_seeded():
    lengths = list(range(100))
    assert length_grouped_batches(lengths, 8, shuffle=True, seed=1) == length_grouped_batches(lengths, 8, shuffle=True, seed=1)
    assert length_grouped_batches(lengths, 8, shuffle=True, seed=1) != length_grouped_batches(lengths, 8, shuffle=True, seed=2)


def test_inference_order_is_sorted_by_length():
    assert length_grouped_batches([5, 1, 3, 2], 2, shuffle=False) == [[1, 3], [2, 0]]


def test_collate_pads_to_the_longest_in_batch():
    enc = Encoded([[101, 7, 102], [101, 102], [101, 8, 9, 10, 102]], [0, 1, 2])
    batch = collate(enc, [0, 1], pad_id=0)
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [0, 1]
