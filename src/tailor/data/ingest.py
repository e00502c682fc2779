"""Read a labelled text file (CSV, TSV or JSON Lines) into a :class:`TextDataset`.

The file is streamed, never read whole: one pass checks the encoding, a second parses it, and both count
bytes against the size limit (so a pipe or special file cannot exceed it either). A pipe or other
non-regular file is first copied, within the limit, to a temporary file so that it can be read twice.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Iterator

from tailor.data.dataset import SourceInfo, TextDataset
from tailor.errors import DataError, UsageError
from tailor.settings import get_settings

FORMATS = ("csv", "tsv", "jsonl")
TEXT_NAMES = ("text", "sentence", "content", "review", "message", "query", "utterance", "question", "body",
              "comment", "title", "document")
LABEL_NAMES = ("label", "labels", "category", "class", "intent", "target", "sentiment", "y", "tag",
               "department", "topic")

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_HEAD_BYTES = 8192
_CHUNK_BYTES = 1 << 20
_MIB = 1 << 20
_BINARY_CONTROL_SHARE = 0.3  # above this share of control bytes, the head is not text
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\x1b")
_COLUMN_SAMPLE_ROWS = 200  # rows looked at to tell a text column from a label column

Record = tuple[int, dict]  # (1-based line of the row start, column -> value)


def read_dataset(path, text_col: str | None = None, label_col: str | None = None, *,
                 max_bytes: int | None = None, fmt: str | None = None,
                 keep_columns: tuple[str, ...] = ()) -> TextDataset:
    """Read a CSV, TSV or JSONL file of labelled texts.

    Rows with an empty text or label are kept (cleaning removes and counts them); values are not stripped.
    The columns of a JSONL file are the keys of its first 200 objects; a row without the key reads as empty.

    Args:
        path: the file. Its format comes from the extension (``.csv``, ``.tsv``/``.tab``,
            ``.jsonl``/``.ndjson``), else from its first bytes.
        text_col: column (or JSON key) holding the text; guessed from its name when omitted.
        label_col: column (or JSON key) holding the label; guessed likewise.
        max_bytes: largest file accepted; defaults to ``TAILOR_MAX_FILE_MB``.
        fmt: ``csv``, ``tsv`` or ``jsonl``, overriding detection.
        keep_columns: other columns to read into ``columns`` (e.g. a slice column), as text.

    Returns:
        The rows, with ``lines[i]`` the 1-based line where row ``i`` starts and ``source`` filled in.

    Raises:
        UsageError: ``fmt`` is not a known format.
        DataError: the file is missing, too large, binary, not decodable, malformed (with the line), empty,
            or its text and label columns cannot be found, or a column of ``keep_columns`` does not exist.
    """
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    path = Path(path)
    limit = get_settings().max_file_bytes if max_bytes is None else max_bytes
    with open_checked_text(path, limit) as (stream, encoding, head, meter):
        fmt = fmt or _format_from_name(path) or _sniff_format(head, encoding)
        columns, records = _jsonl_records(stream) if fmt == "jsonl" else _delimited_records(stream, fmt)
        sample = list(islice(records, _COLUMN_SAMPLE_ROWS))
        if not columns:
            columns = _keys_in_order(sample)
        text_col, label_col = _choose_columns(columns, sample, text_col, label_col)
        _check_kept_columns(keep_columns, columns, path)
        texts, labels, lines = [], [], []
        kept: dict[str, list[str]] = {name: [] for name in keep_columns}
        for line, record in chain(sample, records):
            texts.append(_cell_text(record.get(text_col), text_col, line))
            labels.append(_cell_text(record.get(label_col), label_col, line))
            lines.append(line)
            for name, values in kept.items():
                values.append(_cell_text(record.get(name), name, line))
        sha256 = meter.sha256.hexdigest()
    source = SourceInfo(path=str(path), format=fmt, encoding=encoding, sha256=sha256, text_col=text_col,
                        label_col=label_col, rows_read=len(texts))
    return TextDataset(texts=texts, labels=labels, lines=lines, source=source, columns=kept)


@dataclass(frozen=True)
class UnlabelledTexts:
    """Texts without labels (an unlabelled pool, a domain corpus), with where they came from.

    Attributes:
        texts: the non-empty texts, stripped, in file order.
        lines: the 1-based line of each text.
        path / sha256: the file and the SHA-256 of its bytes (a pool that is the training file has the same).
        text_col: the column or JSON key read (``None`` for a plain text file).
        empty: rows whose text was empty or blank (left out).
    """

    texts: list[str]
    lines: list[int]
    path: str
    sha256: str
    text_col: str | None
    empty: int


def read_texts(path, text_col: str | None = None, *, max_bytes: int | None = None,
               fmt: str | None = None) -> UnlabelledTexts:
    """Read unlabelled texts: a CSV/TSV/JSONL file's text column (any label column is ignored), or a plain
    ``.txt`` file with one text per line.

    The text column is ``text_col``, else the first of the usual text names (``text``, ``sentence``, ...), else
    the only column, else the column with the longest values in the first 200 rows. ``fmt`` (``txt``, ``csv``,
    ``tsv``, ``jsonl``) overrides the format the file name and first bytes give.

    Raises:
        DataError: the file is missing, too large, binary, malformed (with the line), holds no text at all, or
            ``text_col`` is not one of its columns.
    """
    path = Path(path)
    limit = get_settings().max_file_bytes if max_bytes is None else max_bytes
    with open_checked_text(path, limit) as (stream, encoding, head, meter):
        if (fmt or path.suffix.lower().lstrip(".")) == "txt":
            if text_col is not None:
                raise DataError(f"{path.name} is a plain text file (one text per line): it has no column "
                                f"{text_col!r}", field=text_col)
            column, records = None, ((line, {None: raw.rstrip("\r\n")}) for line, raw in enumerate(stream, 1))
        else:
            fmt = fmt or _format_from_name(path) or _sniff_format(head, encoding)
            columns, records = _jsonl_records(stream) if fmt == "jsonl" else _delimited_records(stream, fmt)
            sample = list(islice(records, _COLUMN_SAMPLE_ROWS))
            column = _text_column(columns or _keys_in_order(sample), sample, text_col)
            records = chain(sample, records)
        texts, lines, empty = [], [], 0
        for line, record in records:
            text = _cell_text(record.get(column), column or "text", line).strip()
            if text:
                texts.append(text)
                lines.append(line)
            else:
                empty += 1
        sha256 = meter.sha256.hexdigest()
    if not texts:
        raise DataError(f"{path.name} holds no text" + (f" in column {column!r}" if column else ""))
    return UnlabelledTexts(texts, lines, str(path), sha256, column, empty)


def _text_column(columns: list[str], sample: list[Record], text_col: str | None) -> str:
    """The column of unlabelled texts (see :func:`read_texts`)."""
    if text_col is not None:
        if text_col not in columns:
            raise DataError(f"column {text_col!r} not found; columns are: {', '.join(columns)}", field=text_col)
        return text_col
    known = _known_column(columns, TEXT_NAMES, exclude=None)
    if known or len(columns) == 1:
        return known or columns[0]

    return max(columns, key=lambda col: _mean_length(col, sample))


def _check_kept_columns(keep: tuple[str, ...], columns: list[str], path: Path) -> None:
    """Raises DataError naming the first column of ``keep`` the file lacks, with the columns it has."""
    for name in keep:
        if name not in columns:
            raise DataError(f"no column {name!r} in {path} (columns: {', '.join(columns)})", field=name)


def _choose_columns(columns: list[str], sample: list[Record], text_col: str | None,
                   label_col: str | None) -> tuple[str, str]:
    """Pick the text and label columns: as given, else by known names, else (two columns) by length.

    Args:
        columns: the header (CSV/TSV) or the JSON keys seen.
        sample: the first rows, used to compare average lengths when exactly two unknown columns remain.
        text_col / label_col: the user's choice, if any.

    Returns:
        ``(text_col, label_col)``.

    Raises:
        DataError: a given column does not exist, or the choice is ambiguous.
    """
    for given in (text_col, label_col):
        if given is not None and given not in columns:
            raise DataError(f"column {given!r} not found; columns are: {', '.join(columns)}", field=given)
    text_col = text_col or _known_column(columns, TEXT_NAMES, exclude=label_col)
    label_col = label_col or _known_column(columns, LABEL_NAMES, exclude=text_col)
    if len(columns) == 2 and (text_col is None or label_col is None):
        if text_col or label_col:
            chosen = text_col or label_col
            other = columns[1] if columns[0] == chosen else columns[0]
            text_col, label_col = (chosen, other) if text_col else (other, chosen)
        else:
            text_col, label_col = _longer_column_first(columns, sample)
    if text_col is None or label_col is None or text_col == label_col:
        raise DataError(f"cannot tell which columns hold the text and the label (columns: {', '.join(columns)}); "
                        "pass --text-col and --label-col")
    return text_col, label_col


def _known_column(columns: list[str], names: tuple[str, ...], exclude: str | None) -> str | None:
    """The first of ``names`` (in priority order) that is a column, compared case-insensitively."""
    by_lower = {c.lower(): c for c in reversed(columns) if c != exclude}
    return next((by_lower[n] for n in names if n in by_lower), None)


def _longer_column_first(columns: list[str], sample: list[Record]) -> tuple[str | None, str | None]:
    """Order two columns by average value length, longest first; ``(None, None)`` on a tie."""
    first, second = (_mean_length(c, sample) for c in columns)
    if first == second:
        return None, None
    return (columns[0], columns[1]) if first > second else (columns[1], columns[0])


def _mean_length(column: str, sample: list[Record]) -> float:
    """The average length of ``column``'s values in ``sample``."""
    return sum(len(str(r.get(column) or "")) for _, r in sample) / max(1, len(sample))


def _keys_in_order(sample: list[Record]) -> list[str]:
    """JSON keys in the order they first appear in the sample."""
    return list(dict.fromkeys(key for _, record in sample for key in record))


def _cell_text(value, column: str, line: int) -> str:
    """A cell as text: strings as they are, numbers and booleans with ``str()``, null as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        kind = "list" if isinstance(value, list) else "object"
        raise DataError(f"{column!r} holds a JSON {kind}; expected text or a number", line=line, field=column)
    return value if isinstance(value, str) else str(value)


def _delimited_records(stream, fmt: str) -> tuple[list[str], Iterator[Record]]:
    """The header and the rows of a CSV or TSV stream; blank lines are skipped.

    Raises:
        DataError: the file is empty, has no data rows, repeats a header name, a row has the wrong
            number of fields, or the CSV module rejects a row.
    """
    reader = csv.reader(stream, delimiter="\t" if fmt == "tsv" else ",")
    rows = _numbered_rows(reader)
    header_line, header = next(rows, (0, None))
    if header is None:
        raise DataError("file is empty")
    columns = [name.strip() for name in header]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"column {repeated[0]!r} appears more than once in the header", line=header_line,
                        field=repeated[0])

    def records() -> Iterator[Record]:
        count = 0
        for line, row in rows:
            if len(row) != len(columns):
                raise DataError(f"expected {len(columns)} fields, found {len(row)}", line=line)
            count += 1
            yield line, dict(zip(columns, row))
        if count == 0:
            raise DataError("no data rows after the header")

    return columns, records()


def _numbered_rows(reader) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the physical line where each starts (a quoted field may span lines)."""
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"not valid CSV ({exc})", line=start) from exc
        if row:
            yield start, row
        start = reader.line_num + 1


def _jsonl_records(stream) -> tuple[list[str], Iterator[Record]]:
    """The objects of a JSON Lines stream; the columns are left for the caller to collect from them.

    Raises:
        DataError: a line is not valid JSON or not an object, or there are no objects at all.
    """
    def records() -> Iterator[Record]:
        count = 0
        for line, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", line=line) from exc
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object, found {type(record).__name__}", line=line)
            count += 1
            yield line, record
        if count == 0:
            raise DataError("file is empty")

    return [], records()


def _format_from_name(path: Path) -> str | None:
    return _EXTENSIONS.get(path.suffix.lower())


def _sniff_format(head: bytes, encoding: str) -> str:
    """``jsonl`` when the first non-space character is ``{``, ``tsv`` when the first line has a tab, else ``csv``.

    Raises:
        DataError: the file starts with ``[``, i.e. it is a JSON array rather than JSON Lines.
    """
    text = head.decode(encoding, errors="replace").lstrip()
    if text.startswith("{"):
        return "jsonl"
    if text.startswith("["):
        raise DataError("the file looks like a JSON array; write one JSON object per line (JSON Lines)")
    return "tsv" if "\t" in text.split("\n", 1)[0] else "csv"


def _read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(_HEAD_BYTES)


def _check_is_text(head: bytes, path: Path) -> None:
    """Reject UTF-16 text (Excel's "Unicode Text") and files whose first bytes hold a NUL or mostly control bytes.

    Raises:
        DataError: the file is UTF-16 or looks binary.
    """
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError("the file is UTF-16 text; re-save it as UTF-8")
    controls = sum(1 for b in head if (b < 32 or b == 127) and b not in _TEXT_CONTROLS)
    if b"\x00" in head or controls > _BINARY_CONTROL_SHARE * len(head):
        raise DataError(f"{path} looks like a binary file, not CSV/TSV/JSONL")


def _detect_encoding(path: Path, head: bytes, limit: int) -> str:
    """``utf-8-sig`` after a BOM, else ``utf-8`` if the whole file decodes strictly, else ``gb18030``.

    Raises:
        DataError: the file is not valid in any of them; the message names the first bad line (of the
            encoding that got further into the file).
    """
    if head.startswith(codecs.BOM_UTF8):
        candidates = ("utf-8-sig",)
    else:
        candidates = ("utf-8", "gb18030")
    failures = []
    for encoding in candidates:
        failure = _first_decode_failure(path, encoding, limit)
        if failure is None:
            return encoding
        failures.append(failure)
    line, byte = max(failures)
    names = " or ".join(c.upper().replace("-SIG", "") for c in candidates)
    raise DataError(f"the file is not valid {names} text (byte 0x{byte:02x}); re-save it as UTF-8", line=line)


def _first_decode_failure(path: Path, encoding: str, limit: int) -> tuple[int, int] | None:
    """Stream the file through a strict incremental decoder; ``(line, bad byte)`` of the first error, or None."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    newlines = 0
    with _open_metered(path, limit) as meter:
        while chunk := meter.read(_CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.object is the decoder's pending bytes plus this chunk; pending bytes are never newlines.
                return newlines + exc.object.count(b"\n", 0, exc.start) + 1, exc.object[exc.start]
            newlines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return newlines + 1, exc.object[exc.start]
    return None


class _MeteredReader(io.RawIOBase):
    """A binary reader that hashes and counts what passes through and stops at the size limit."""

    def __init__(self, raw, limit: int):
        self._raw = raw
        self._limit = limit
        self.bytes_read = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        self.bytes_read += n
        if self.bytes_read > self._limit:
            raise DataError(f"the file is larger than the limit of {format_mib(self._limit)} "
                            "(set TAILOR_MAX_FILE_MB to raise it)")
        self.sha256.update(memoryview(buffer)[:n])
        return n


@contextmanager
def open_checked_text(path: Path, limit: int):
    """Open a data file for reading as text, after the checks every reader needs.

    The file must exist, be at most ``limit`` bytes and be text (UTF-8, UTF-8 with BOM or GB18030, detected).
    Yields ``(stream, encoding, head, meter)``: a text stream with universal newlines off, the encoding, the
    first bytes (for format sniffing) and the meter whose ``sha256`` digests what was read.

    Raises:
        DataError: missing, too large, binary or not decodable.
    """
    with _as_regular_file(path, limit) as local:
        head = _read_head(local)
        _check_is_text(head, path)
        encoding = _detect_encoding(local, head, limit)
        with _open_metered(local, limit) as meter:
            yield io.TextIOWrapper(io.BufferedReader(meter), encoding=encoding, newline=""), encoding, head, meter


@contextmanager
def _open_metered(path: Path, limit: int) -> Iterator[_MeteredReader]:
    with path.open("rb", buffering=0) as raw:
        yield _MeteredReader(raw, limit)


@contextmanager
def _as_regular_file(path: Path, limit: int) -> Iterator[Path]:
    """The path itself when it is a regular file within the limit; a pipe or device is copied to a temp file.

    Raises:
        DataError: the path does not exist, is a directory, or is over the size limit.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a file")
    if path.is_file():
        if info.st_size > limit:
            raise DataError(f"the file is {format_mib(info.st_size)}, over the limit of {format_mib(limit)} "
                            "(set TAILOR_MAX_FILE_MB to raise it)")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tailor-ingest-") as tmp:
        copy = Path(tmp) / "input"
        with _open_metered(path, limit) as meter, copy.open("wb") as out:
            shutil.copyfileobj(meter, out, _CHUNK_BYTES)
        yield copy


def format_mib(n: int) -> str:
    """A byte count as MiB for messages: ``0.02 MiB``, ``512.00 MiB``."""
    return f"{n / _MIB:,.2f} MiB"

