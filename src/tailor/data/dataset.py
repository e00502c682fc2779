"""The in-memory labelled text dataset that every stage passes along."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class SourceInfo:
    """Where a dataset came from, recorded in a model version's lineage.

    Attributes:
        path: the file as given.
        format: ``csv``, ``tsv`` or ``jsonl``.
        encoding: ``utf-8``, ``utf-8-sig`` or ``gb18030``.
        sha256: hex digest of the file's bytes.
        text_col / label_col: the columns (or JSON keys) used.
        rows_read: data rows read (header excluded).
    """

    path: str
    format: str
    encoding: str
    sha256: str
    text_col: str
    label_col: str
    rows_read: int


@dataclass(frozen=True)
class TextDataset:
    """Parallel lists of texts, string labels and the source line of each row.

    ``lines[i]`` is the 1-based line number of row ``i`` in the source file, so every later message
    (a duplicate, a likely label error) can point at the user's own file. ``columns`` holds the other columns
    a reader was asked to keep (a slice column such as region), one value per row.
    """

    texts: list[str]
    labels: list[str]
    lines: list[int]
    source: SourceInfo | None = None
    meta: dict = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)  # extra columns asked for: name -> value per row

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_set(self) -> list[str]:
        """Distinct labels, sorted, so that class ids are stable across runs."""
        return sorted(set(self.labels))

    def label_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))

    def subset(self, indices) -> "TextDataset":
        """A new dataset with the rows at ``indices``, in that order."""
        idx = list(indices)
        return replace(
            self,
            texts=[self.texts[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            lines=[self.lines[i] for i in idx],
            columns={name: [values[i] for i in idx] for name, values in self.columns.items()},
        )
