"""The local executor's split of the cores between workers (its concurrency limit is tested end to end in
tests/e2e/test_server_openai.py)."""

from __future__ import annotations

from tailor.jobs.executor import core_groups


def test_cores_are_split_between_workers_and_shared_round_robin_beyond_them():
    assert core_groups(1, [0, 1]) == [[0, 1]]
    assert core_groups(2, [0, 1]) == [[0], [1]]
    assert core_groups(2, [0, 1, 2, 3, 4]) == [[0, 1], [2, 3, 4]]
    assert core_groups(3, [0, 1]) == [[0], [1], [0]]
