"""open_clip's CLIP tokenizer (byte-level BPE, 49,408 tokens), without torch or open_clip.

A text query must not pay for ``import torch`` (seconds): this is open_clip's
``SimpleTokenizer`` (itself OpenAI's CLIP tokenizer, MIT licence) returning numpy arrays.
The vocabulary is the ``bpe_simple_vocab_16e6.txt.gz`` that open_clip's wheel ships; it is
found without importing open_clip. ``tests/test_clip.py`` checks the token ids against
open_clip's own tokenizer.

Example:
    >>> tok = ClipTokenizer()  # doctest: +SKIP
    >>> tok(["a red bicycle"])[0, :5]  # doctest: +SKIP
    array([49406,   320,   736, 11652, 49407])
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import itertools
import string
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import MissingDependencyError

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
CLEAN_MODES = ("lower", "whitespace", "canonicalize")
_PATTERN = (
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def vocab_path() -> Path:
    """open_clip's BPE vocabulary file, located without importing open_clip.

    Raises:
        MissingDependencyError: open_clip is not installed.
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "searching by words needs open_clip: pip install 'lookalike[clip]'"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"open_clip is installed without its {VOCAB_FILE}; reinstall it: "
        "pip install --force-reinstall 'lookalike[clip]'"
    )


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += range(ord("®"), ord("ÿ") + 1)
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


class ClipTokenizer:
    """Text -> ``(n, context_length)`` int64 token ids, as open_clip's ``SimpleTokenizer``.

    Args:
        context_length: tokens per text (77 for CLIP); longer texts are cut, keeping the
            end-of-text token.
        clean: open_clip's text cleaning: ``lower``, ``whitespace`` or ``canonicalize``.

    Raises:
        MissingDependencyError: open_clip (with ftfy and regex) is not installed.
    """

    def __init__(self, context_length: int = 77, clean: str = "lower") -> None:
        try:
            import regex
        except ImportError as e:
            raise MissingDependencyError(
                f"searching by words needs {e.name}: pip install 'lookalike[clip]'"
            ) from e
        if clean not in CLEAN_MODES:
            raise ValueError(f"unknown text cleaning {clean!r}")
        self.context_length = context_length
        self.clean = clean
        self.byte_encoder = _bytes_to_unicode()
        with gzip.open(vocab_path()) as f:
            merges_text = f.read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges_text[1 : 49152 - 256 - 2 + 1]]
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {t: t for t in ("<start_of_text>", "<end_of_text>")}
        self.pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self.sot = self.encoder["<start_of_text>"]
        self.eot = self.encoder["<end_of_text>"]

    @property
    def name(self) -> str:
        """What the setup records: ``"clip-bpe:<vocab>:<clean>:<context>"``."""
        return f"clip-bpe:{len(self.encoder)}:{self.clean}:{self.context_length}"

    def _cleaned(self, text: str) -> str:
        if not (text.isascii() and text.isprintable()):
            # ftfy repairs mojibake and odd characters; printable ASCII has none, and
            # importing ftfy costs ~0.2 s of a query's start-up.
            try:
                import ftfy
            except ImportError as e:
                raise MissingDependencyError(
                    "searching by words needs ftfy: pip install 'lookalike[clip]'"
                ) from e
            text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        if self.clean == "canonicalize":
            text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation))
            return " ".join(text.lower().split()).strip()
        text = " ".join(text.split()).strip()
        return text.lower() if self.clean == "lower" else text

    def _bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = (*token[:-1], token[-1] + "</w>")
        pairs = set(itertools.pairwise(word))
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            if len(word) == 1:
                break
            pairs = set(itertools.pairwise(word))
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """The BPE ids of ``text``, without start and end tokens."""
        ids: list[int] = []
        for token in self.pattern.findall(self._cleaned(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), context_length)`` int64: start, ids, end, zero padding."""
        out = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out
