"""Text datasets (kind ``text``): inputs are ``LongTensor (B, T)`` token ids and ``meta`` holds the
vocabulary (``itos``, ``vocab_size``).

* ``reverse`` and ``sort``: algorithmic per-token classification tasks on digit sequences
  (``meta["per_token"]``: one target per position).
* ``text``: character-level next-token prediction on a corpus file (by default the corpus
  shipped in ``plugins/data/corpus.txt``, installed as ``zoo_builtins/data/``), with the
  corpus's unigram entropy in ``meta["unigram_nats"]`` as the baseline a model must beat.

Nothing is downloaded; the seed fixes every split.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import torch

import zoo

DEFAULT_CORPUS = Path(__file__).resolve().parent / "data" / "corpus.txt"
CHUNK_WINDOWS = 8  # a text chunk holds 8 non-overlapping windows; chunks are what the seed splits


def _digit_task(name: str, target):
    """A loader for an algorithmic task on random digit sequences: per-token classification."""

    def load(seed: int, length: int = 16, n_samples: int = 10000, vocab_size: int = 10) -> zoo.Splits:
        zoo.check_range("data.length", length, 2)
        zoo.check_range("data.n_samples", n_samples, 20)
        zoo.check_range("data.vocab_size", vocab_size, 2)
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(vocab_size, (n_samples, length), generator=g)
        y = target(x)
        meta = {"name": name, "vocab_size": vocab_size, "itos": [str(i) for i in range(vocab_size)],
                "per_token": True}
        info = zoo.DataInfo(kind="text", task="classification", input_shape=(length,), output_dim=vocab_size,
                            meta=meta)
        return zoo.Splits(*(zoo.TensorSplit(x[i], y[i]) for i in zoo.split_indices(n_samples, seed)), info=info)

    return load


def _path_key(path) -> str:
    return f"data.path={str(path)!r}"


def read_corpus(path) -> tuple[Path, str]:
    """The corpus as text; a one-line ``ValueError`` naming ``data.path`` when it cannot be used."""
    fix = "point data.path at a UTF-8 text file (or leave it unset for the bundled corpus)"
    p = DEFAULT_CORPUS if path in (None, "") else zoo.data_path(path, "file", fix[len("point data.path at "):])
    raw = p.read_bytes()
    if not raw.strip():
        raise ValueError(f"{_path_key(p)} is empty: {fix}")
    if b"\x00" in raw:
        raise ValueError(f"{_path_key(p)} is not text (it contains NUL bytes, like a binary file): {fix}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{_path_key(p)} is not UTF-8 text (byte {exc.start}: {exc.reason}): "
                         f"convert it to UTF-8 or {fix}") from None
    text = text.replace("\r\n", "\n")
    control = sum(1 for c in text if c not in "\n\t" and unicodedata.category(c) == "Cc")
    if control > 0.01 * len(text):
        raise ValueError(f"{_path_key(p)} is not text ({control} of {len(text)} characters are control "
                         f"characters, like a binary file): {fix}")
    return p, text


def unigram_entropy(ids: torch.Tensor, vocab_size: int) -> float:
    """Entropy of the character frequencies, in nats per character: the loss of a model without context."""
    p = torch.bincount(ids, minlength=vocab_size).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def load_text(seed: int, path=None, block_size: int = 64, stride: int = 32, max_chars=None) -> zoo.Splits:
    """Character-level next-token prediction on a text file.

    The corpus is cut into chunks of ``8 * block_size + 1`` characters; the seed assigns whole chunks
    to train/val/test (70/15/15), so no window straddles two splits. Validation and test windows
    tile their chunks (each character is a target once); training windows start every ``stride``.
    """
    zoo.check_range("data.block_size", block_size, 2)
    zoo.check_range("data.stride", stride, 1)
    if max_chars is not None:
        if not isinstance(max_chars, int) or isinstance(max_chars, bool):
            raise ValueError(f"data.max_chars={max_chars!r} is not an integer: give a character count or null for all")
        zoo.check_range("data.max_chars", max_chars, 1)
    p, text = read_corpus(path)
    if max_chars is not None:
        text = text[:max_chars]
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    chunk = CHUNK_WINDOWS * block_size + 1
    n_chunks = len(ids) // chunk
    if n_chunks < 4:
        raise ValueError(f"{_path_key(p)} is too short: {len(ids)} characters make {n_chunks} chunks of "
                         f"{chunk} (8 * data.block_size + 1), at least 4 are needed: use a longer file "
                         f"or a smaller data.block_size")
    chunks = ids[:n_chunks * chunk].view(n_chunks, chunk)

    def windows(rows: torch.Tensor, step: int):
        starts = torch.arange(0, chunk - block_size, step)
        w = rows[:, starts[:, None] + torch.arange(block_size + 1)].reshape(-1, block_size + 1)
        return zoo.TensorSplit(w[:, :-1].contiguous(), w[:, 1:].contiguous())

    tr, va, te = zoo.split_indices(n_chunks, seed)
    meta = {"name": "text", "vocab_size": len(chars), "itos": chars, "char_level": True, "per_token": True,
            "unigram_nats": unigram_entropy(ids, len(chars)), "path": str(p), "chars": len(ids),
            "source": zoo.source_of(p)}
    info = zoo.DataInfo(kind="text", task="next_token", input_shape=(block_size,), output_dim=len(chars), meta=meta)
    return zoo.Splits(windows(chunks[tr], stride), windows(chunks[va], block_size), windows(chunks[te], block_size),
                      info=info)


@zoo.hookimpl
def zoo_datasets():
    digits_smoke = {"length": 6, "n_samples": 200}
    return [
        zoo.Dataset(name="reverse", kind="text", task="classification",
                    load=_digit_task("reverse", lambda x: x.flip(1)), smoke=digits_smoke,
                    description="reverse a sequence of random digits: per-token classification"),
        zoo.Dataset(name="sort", kind="text", task="classification",
                    load=_digit_task("sort", lambda x: x.sort(dim=1).values), smoke=digits_smoke,
                    description="sort a sequence of random digits: per-token classification"),
        zoo.Dataset(name="text", kind="text", task="next_token", load=load_text,
                    smoke={"block_size": 16, "stride": 16, "max_chars": 8000},
                    description="character-level next-token prediction on a text file (default: bundled corpus)"),
    ]
