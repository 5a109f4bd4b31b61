"""The accumulator and the utterance record."""

from __future__ import annotations

from cartesia_stt_async.protocol.events import Word
from cartesia_stt_async.protocol.transcript import Transcript, Utterance


def test_concatenation_is_verbatim() -> None:
    t = Transcript()
    for delta in ["Insert", "ing spaces ", "", " twice", "  "]:
        t.add_final(delta)
    assert t.text == "Inserting spaces  twice  "
    assert str(t) == t.text
    assert t.final_chunks == 5
    assert "utterances=0" in repr(t)


def test_interim_view() -> None:
    t = Transcript()
    t.set_interim("gue")
    t.set_interim("guess")
    assert (t.text, t.interim) == ("", "guess")
    t.add_final("Guess.")
    assert (t.text, t.interim) == ("Guess.", "")


def test_utterance_accumulates_words_and_latency() -> None:
    u = Utterance(index=3)
    assert u.latency is None
    u._add_final(" a", [Word("a", 0.0, 0.2)], "rid")
    u._add_final(" b", None, "")
    assert (u.text, u.final_chunks, u.request_id) == (" a b", 2, "rid")
    assert u.words == [Word("a", 0.0, 0.2)]
    u.finalize_sent_at, u.flushed_at = 1.0, 1.25
    assert u.latency == 0.25
    assert "latency=0.250s" in repr(u)
