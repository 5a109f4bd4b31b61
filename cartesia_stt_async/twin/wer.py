"""Word error rate, for checking transcripts from the twin's recognizer (or the real API).

``word_error_rate(reference, hypothesis)`` = (substitutions + deletions + insertions) / words in
the reference, after the usual normalization: lower case, punctuation dropped (apostrophes
removed inside words, so ``o'clock`` matches ``oclock``), whitespace collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["normalize", "word_error_rate"]

_PUNCT = re.compile(r"[^\w\s']")


def normalize(text: str) -> list[str]:
    """The words of ``text``, lower-cased, without punctuation."""
    return _PUNCT.sub(" ", text.lower()).replace("'", "").split()


def _edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """Edit distance in words over the reference length (several texts: pooled).

    Args:
        reference: The spoken text, or a list of texts.
        hypothesis: The transcript, or a list of transcripts (same length as ``reference``).

    Raises:
        ValueError: If the lists differ in length or the reference has no words.
    """
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    errors = words = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        ref_words = normalize(ref)
        errors += _edits(ref_words, normalize(hyp))
        words += len(ref_words)
    if words == 0:
        raise ValueError("the reference has no words")
    return errors / words
