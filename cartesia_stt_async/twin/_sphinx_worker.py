"""The worker-process side of :class:`~.sphinx.SphinxEngine`: decoders and their sessions.

A worker process holds a pool of pocketsphinx decoders and one :class:`_WorkerSession` per
connection. It is a program of its own (``sphinx.py`` starts it with ``python -c``, never with
``multiprocessing``, so the server's ``__main__`` is never imported again): :func:`main`
answers ``(op, args)`` requests from the server process, one at a time, over two pipes.
Nothing here runs on the server's event loop.

The channel is a pair of pipes of its own, not stdin and stdout: the worker's stdin is
``/dev/null`` and its stdout and stderr go to a log file the server reads when the worker
dies, so nothing the interpreter, an import or the model code prints can ever corrupt a frame.
Each message is a frame, a 4-byte big-endian length then a pickle (both ends are this
package, in processes the server started). The first request frame is the worker's
configuration; each later one a request ``(op, args)``, answered by one ``("ok", value)`` or
``("err", message)`` frame. EOF on the request pipe means quit: the server closed it, or died.
"""

from __future__ import annotations

import faulthandler
import pickle
import re
import resource
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from ..protocol.audio import BYTES_PER_SAMPLE
from . import _dsp
from .engines import Segment

__all__ = [
    "DECODER_RATE",
    "NARROWBAND_BELOW",
    "NARROWBAND_CMN",
    "frame",
    "main",
    "read_frame",
    "write_frame",
]

DECODER_RATE: Final = 16000
# 20 ms of 16-bit audio per process_raw call while decoding live. The block size slightly
# changes pocketsphinx's results (one call per 100 ms frame: WER 0.160 vs 0.154 over the
# benchmark's sentences), so it is fixed here, whatever the client's frame size.
_SLICE_BYTES: Final = DECODER_RATE * 2 // 50
_FRAMES_PER_SECOND: Final = 100  # pocketsphinx feature frames
# A narrowband utterance up to this long (16 kHz 16-bit bytes: 120 s) is decoded whole at
# finalize; a longer one gets the live decoder's result (its audio is not kept).
_MAX_WHOLE_BYTES: Final = 120 * DECODER_RATE * 2
_ALT_PRONUNCIATION = re.compile(r"\(\d+\)$")

# Client rates below this are narrowband (telephone 8 kHz): their utterances are decoded
# whole at finalize. From 11.025 kHz up the live path measured better (WER 0.246 against
# 0.281 over the benchmark's other speakers at 11.025 kHz), so it stays.
NARROWBAND_BELOW: Final = 11025

# Where live cepstral mean normalisation starts for narrowband audio: the mean cepstrum of
# the twin's own voice converted to 8 kHz and back to 16 kHz (``python
# benchmarks/twin_quality.py --cmn-priors``). The model's own start (``-cmninit 40,3,-1``)
# suits wideband audio; audio with no energy above 4 kHz has a very different mean, which
# live normalisation took several utterances to reach. Only interims use it: narrowband
# finals are decoded whole, with the utterance's own mean.
NARROWBAND_CMN: Final = (
    "47.59,42.39,-18.45,38.32,-16.58,-6.71,17.36,-24.99,5.65,-3.31,-8.86,-0.03,-6.90"
)


def _new_decoder() -> Any:
    from pocketsphinx import Decoder  # the ``twin`` extra

    return Decoder(samprate=DECODER_RATE, loglevel="FATAL")


def _clean_word(word: str) -> str | None:
    """A segment's word as text, or ``None`` for silence, fillers and sentence markers."""
    if not word or word[0] in "<[" or word.startswith("++"):
        return None
    return _ALT_PRONUNCIATION.sub("", word)


@dataclass
class _DecoderState:
    """One decoder and where its session's audio stands."""

    decoder: Any
    in_utterance: bool = False  # the live decoder is inside an utterance
    samples: int = 0  # 16 kHz samples received this session
    utterance_start: int = 0  # ``samples`` when the current utterance started
    dirty: bool = False  # language model changed: do not pool


@dataclass
class _WorkerSession:
    """One connection's decoding state, inside a worker process.

    Audio at 11.025 kHz and above is decoded live as it arrives (``process_raw`` in 20 ms
    slices); ``finalize`` ends the utterance and reads its words. The live cepstral mean
    carries over from one utterance to the next within the session.

    Narrowband audio (a client rate below :data:`NARROWBAND_BELOW`, 11.025 kHz: telephone
    8 kHz) is kept until ``finalize`` (which also flushes the resampler: an utterance is
    exactly the audio sent since the previous one) and decoded whole then (``full_utt``: the
    feature state reset, the utterance's own cepstral mean), after :func:`_dsp.fill_band`
    gave it content in the band it lacks. Its words then depend on its audio alone: not on
    the utterances before it, on the session a pooled decoder served before, or on whether
    interims were asked for. With ``interims`` it is also decoded live (from a narrowband
    cepstral mean, :data:`NARROWBAND_CMN`), for partial hypotheses only. An utterance longer
    than ``_MAX_WHOLE_BYTES`` falls back to the live result.
    """

    state: _DecoderState
    encoding: str
    rate: int
    language: str
    interims: bool
    width: int = field(init=False)
    rest: bytes = b""
    finals_sent: int = 0
    last_interim: str = ""
    # Narrowband: the utterance's 16 kHz audio so far (``None``: too long, live only).
    utterance: bytearray | None = field(init=False)

    def __post_init__(self) -> None:
        self.width = BYTES_PER_SAMPLE[self.encoding]
        self.utterance = None
        if self.rate < NARROWBAND_BELOW:
            self.utterance = bytearray()
            self.state.decoder.set_cmn(NARROWBAND_CMN)

    def _live(self, pcm: bytes) -> None:
        state = self.state
        if not state.in_utterance:
            state.decoder.start_utt()
            state.in_utterance = True
        for i in range(0, len(pcm), _SLICE_BYTES):
            state.decoder.process_raw(pcm[i : i + _SLICE_BYTES], False, False)

    def decode(self, audio: bytes, resampler: _dsp.Resampler, final: bool) -> str | None:
        """Convert and take ``audio``; return the new partial hypothesis, if it changed."""
        state = self.state
        data = self.rest + audio
        cut = len(data) - len(data) % self.width
        self.rest = data[cut:]
        pcm = _dsp.to_s16le(resampler.process(_dsp.decode(data[:cut], self.encoding), final))
        if not pcm:
            return None
        state.samples += len(pcm) // 2
        kept = self.utterance
        if kept is not None:
            if len(kept) + len(pcm) <= _MAX_WHOLE_BYTES:
                kept += pcm
            else:  # too long to keep: the live decoder takes over, from the start
                self.utterance = None
                if not self.interims:
                    self._live(bytes(kept))
        if self.interims or self.utterance is None:  # always, from 11.025 kHz up
            self._live(pcm)
        if not self.interims:
            return None
        hyp = state.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if not text or text == self.last_interim:
            return None
        self.last_interim = text
        return " " + text if self.finals_sent else text

    def _decode_whole(self, pcm: bytes) -> None:
        decoder = self.state.decoder
        pcm = _dsp.to_s16le(_dsp.fill_band(_dsp.decode(pcm, "pcm_s16le"), self.rate))
        decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(pcm, False, True)
        decoder.end_utt()

    def end(self) -> list[Segment]:
        """End the utterance; its words as one final delta (none for silence)."""
        state = self.state
        kept = self.utterance
        if self.rate < NARROWBAND_BELOW:
            self.utterance = bytearray()
        if state.in_utterance:
            state.decoder.end_utt()
            state.in_utterance = False
        elif not kept:
            return []
        if kept:
            self._decode_whole(bytes(kept))
        decoder = state.decoder
        self.last_interim = ""
        offset = state.utterance_start / DECODER_RATE
        duration = (state.samples - state.utterance_start) / DECODER_RATE
        state.utterance_start = state.samples
        words: list[tuple[str, float, float]] = []
        for seg in decoder.seg() or ():
            word = _clean_word(seg.word)
            if word is not None:
                start = offset + seg.start_frame / _FRAMES_PER_SECOND
                end = offset + (seg.end_frame + 1) / _FRAMES_PER_SECOND
                words.append((word, round(start, 3), round(end, 3)))
        if not words:
            return []
        text = " ".join(w for w, _, _ in words)
        if self.finals_sent:
            text = " " + text
        self.finals_sent += 1
        return [
            Segment(
                text,
                is_final=True,
                duration=round(duration, 3),
                language=self.language,
                words=tuple(words),
            )
        ]


class _Recognizer:
    """Everything a worker process holds: the decoder pool and its sessions."""

    def __init__(self, max_idle: int, interims: bool, keyterm_weight: float) -> None:
        self.max_idle = max_idle
        self.interims = interims
        self.keyterm_weight = keyterm_weight
        self.created = 0
        self.idle: list[_DecoderState] = []
        self.sessions: dict[int, tuple[_WorkerSession, _dsp.Resampler]] = {}

    def _create(self) -> _DecoderState:
        decoder = _new_decoder()
        self.created += 1
        return _DecoderState(decoder)

    def prewarm(self, count: int) -> None:
        while len(self.idle) < min(count, self.max_idle):
            self.idle.append(self._create())

    def open(
        self, sid: int, encoding: str, rate: int, language: str, keyterms: Sequence[str]
    ) -> list[str]:
        state = self.idle.pop() if self.idle else self._create()
        session = _WorkerSession(state, encoding, rate, language, self.interims)
        self.sessions[sid] = (session, _dsp.Resampler(rate, DECODER_RATE))
        return sorted(self._boost(state, keyterms)) if keyterms else []

    def _boost(self, state: _DecoderState, keyterms: Sequence[str]) -> set[str]:
        decoder = state.decoder
        lm = decoder.get_lm()
        unknown: set[str] = set()
        added = False
        for term in keyterms:
            for word in term.lower().split():
                if decoder.lookup_word(word) is None:
                    unknown.add(word)
                else:
                    lm.add_word(word, self.keyterm_weight)
                    added = True
        if added:
            state.dirty = True
            decoder.add_lm("keyterms", lm)
            decoder.activate_search("keyterms")
        return unknown

    def feed(self, sid: int, audio: bytes) -> str | None:
        session, resampler = self.sessions[sid]
        return session.decode(audio, resampler, final=False)

    def finalize(self, sid: int) -> list[Segment]:
        session, resampler = self.sessions[sid]
        if session.rate < NARROWBAND_BELOW:
            # The utterance is all the audio up to here: what the resampler's filter still
            # holds is its end, not the start of the next one.
            session.decode(b"", resampler, final=True)
            self.sessions[sid] = (session, _dsp.Resampler(session.rate, DECODER_RATE))
        return session.end()

    def close(self, sid: int) -> list[Segment]:
        session, resampler = self.sessions[sid]
        session.decode(b"", resampler, final=True)
        return session.end()

    def release(self, sid: int) -> None:
        session, _ = self.sessions.pop(sid)
        state = session.state
        if state.in_utterance:
            state.decoder.end_utt()
        if state.dirty or len(self.idle) >= self.max_idle:
            return  # dropped: its memory goes with it
        # Fresh feature state (cepstral mean, noise estimate): a reused decoder then gives
        # exactly what a new one would.
        state.decoder.reinit_feat()
        self.idle.append(_DecoderState(state.decoder))

    def stats(self) -> dict[str, int]:
        return {
            "decoders_created": self.created,
            "idle_decoders": len(self.idle),
            "sessions": len(self.sessions),
            "rss_kib": _rss_kib(),
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }


def _rss_kib() -> int:
    """This process's resident memory now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


_HEADER: Final = struct.Struct(">I")


def frame(message: object) -> bytes:
    """``message`` as one frame: its pickle's length, then the pickle.

    Raises:
        pickle.PicklingError: ``message`` cannot be pickled (or ``TypeError``, ``AttributeError``).
    """
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def write_frame(stream: IO[bytes], message: object) -> None:
    """Send ``message`` as one frame and flush it.

    Raises:
        OSError: The reader is gone (``BrokenPipeError``).
    """
    stream.write(frame(message))
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's message.

    Raises:
        EOFError: The writer closed the channel (mid-frame or between frames).
        pickle.UnpicklingError: The frame is not a pickle (the channel is corrupt).
    """
    (size,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return pickle.loads(_read_exactly(stream, size))


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)  # a buffered read returns short only at EOF
    if data is None or len(data) != size:
        raise EOFError("the channel closed")
    return data


def serve_requests(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Read the configuration, then answer requests until EOF on ``requests``."""
    try:
        max_idle, interims, keyterm_weight = read_frame(requests)
    except EOFError:
        return
    recognizer = _Recognizer(max_idle, interims, keyterm_weight)
    while True:
        try:
            op, args = read_frame(requests)
        except EOFError:
            return
        try:
            reply = frame(("ok", getattr(recognizer, op)(*args)))
        except Exception as exc:  # reported to the caller, the worker goes on
            reply = frame(("err", f"{op} failed: {type(exc).__name__}: {exc}"))
        try:
            replies.write(reply)
            replies.flush()
        except BrokenPipeError:  # the server is gone
            return


def main(requests_fd: int, replies_fd: int) -> None:
    """A worker process's program: requests on ``requests_fd``, replies on ``replies_fd``."""
    faulthandler.enable()  # a crash in the C library leaves a traceback on stderr
    with open(requests_fd, "rb") as requests, open(replies_fd, "wb") as replies:
        serve_requests(requests, replies)
