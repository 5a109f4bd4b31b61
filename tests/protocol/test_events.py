"""Server events (protocol.md §4, §11): exact decoding, tolerance, and clear protocol errors."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from cartesia_stt_async.errors import ProtocolError
from cartesia_stt_async.protocol.events import (
    DoneEvent,
    ErrorEvent,
    Event,
    FlushDoneEvent,
    TranscriptEvent,
    UnknownEvent,
    Word,
    encode_event,
    parse_event,
)

KnownEvent = TranscriptEvent | FlushDoneEvent | DoneEvent | ErrorEvent


def wire(obj: dict[str, Any], as_bytes: bool) -> bytes | str:
    text = json.dumps(obj, ensure_ascii=False)
    return text.encode() if as_bytes else text


def parse_transcript(obj: dict[str, Any], as_bytes: bool = True) -> TranscriptEvent:
    event = parse_event(wire(obj, as_bytes))
    assert isinstance(event, TranscriptEvent)
    return event


AS_BYTES = pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])

# -- every event type, bytes and str -------------------------------------------------------------

CURRENT_ERROR = {
    "type": "error",
    "title": "Invalid model",
    "message": "The model is not valid, make sure it is a valid model ID.",
    "error_code": "model_not_found",
    "doc_url": "https://docs.cartesia.ai/build-with-cartesia/stt-models/latest",
    "status_code": 400,
    "request_id": "2ff8",
}


@AS_BYTES
@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            {"type": "transcript", "is_final": True, "text": " hi", "request_id": "r1"},
            TranscriptEvent(is_final=True, text=" hi", request_id="r1"),
        ),
        (
            {"type": "transcript", "is_final": False, "text": "", "request_id": "r1"},
            TranscriptEvent(is_final=False, text="", request_id="r1"),
        ),
        (
            {
                "type": "transcript",
                "is_final": True,
                "text": "Hi.",
                "request_id": "r1",
                "duration": 1.5,
                "language": "en",
            },
            TranscriptEvent(
                is_final=True, text="Hi.", request_id="r1", duration=1.5, language="en"
            ),
        ),
        (
            {"type": "transcript", "is_final": True, "text": "x", "duration": 2},
            TranscriptEvent(is_final=True, text="x", duration=2.0),
        ),
        ({"type": "flush_done", "request_id": "r1"}, FlushDoneEvent(request_id="r1")),
        ({"type": "flush_done"}, FlushDoneEvent(request_id="")),
        ({"type": "done", "request_id": "r1"}, DoneEvent(request_id="r1")),
        ({"type": "done"}, DoneEvent()),
        (
            CURRENT_ERROR,
            ErrorEvent(
                message="The model is not valid, make sure it is a valid model ID.",
                status_code=400,
                title="Invalid model",
                error_code="model_not_found",
                request_id="2ff8",
                doc_url="https://docs.cartesia.ai/build-with-cartesia/stt-models/latest",
            ),
        ),
        (
            {
                "type": "error",
                "done": True,
                "status_code": 429,
                "error_code": "concurrency_limited",
                "title": "Too many concurrent requests",
                "message": "slow down",
            },
            ErrorEvent(
                message="slow down",
                status_code=429,
                title="Too many concurrent requests",
                error_code="concurrency_limited",
                done=True,
            ),
        ),
        ({"type": "error", "message": "m"}, ErrorEvent(message="m")),
        ({"type": "error"}, ErrorEvent()),
    ],
)
def test_every_event_type(obj: dict[str, Any], expected: KnownEvent, as_bytes: bool) -> None:
    event = parse_event(wire(obj, as_bytes))
    assert type(event) is type(expected)
    assert event == expected
    assert event.type == obj["type"]


def test_transcript_defaults() -> None:
    event = parse_transcript({"type": "transcript", "is_final": False, "text": "x"})
    assert (event.request_id, event.duration, event.language, event.words) == ("", None, None, None)


def test_error_defaults() -> None:
    event = parse_event(b'{"type":"error"}')
    assert isinstance(event, ErrorEvent)
    assert (
        event.message,
        event.status_code,
        event.title,
        event.error_code,
        event.request_id,
        event.doc_url,
        event.code,
        event.done,
    ) == ("", None, None, None, None, None, None, None)


# -- verbatim text -------------------------------------------------------------------------------


@AS_BYTES
@pytest.mark.parametrize(
    "text",
    [
        " leading",
        "trailing ",
        "  both  ",
        "",
        " ",
        "\t",
        "This is a",
        " single sentence.",
        "ing spaces ...",
        "naïve café",
        "Größe",
        "日本語のテキスト",
        "مرحبا",
        "🙂 ok 👍🏽",
        "a\nb",
        '"quoted" and \\ backslash',
        "nul\x00inside",
    ],
)
def test_transcript_text_is_verbatim(text: str, as_bytes: bool) -> None:
    obj = {"type": "transcript", "is_final": True, "text": text, "request_id": "r"}
    event = parse_transcript(obj, as_bytes)
    assert event.text == text
    assert event.is_final is True


@AS_BYTES
def test_ascii_escaped_json_gives_the_same_text(as_bytes: bool) -> None:
    text = " naïve 🙂 日本 "
    raw = json.dumps({"type": "transcript", "is_final": True, "text": text})  # \\u escapes
    assert "\\ud83d\\ude42" in raw
    event = parse_event(raw.encode() if as_bytes else raw)
    assert isinstance(event, TranscriptEvent)
    assert event.text == text


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        ("\\u00e9", "é"),
        ("\\ud83d\\ude42", "🙂"),
        ("\\u0020x\\u0020", " x "),
        ("\\n\\t\\r", "\n\t\r"),
        ('\\"\\\\\\/', '"\\/'),
        ("\\u65e5\\u672c", "日本"),
    ],
)
def test_escaped_unicode(escaped: str, text: str) -> None:
    event = parse_event(
        b'{"type":"transcript","is_final":false,"text":"' + escaped.encode() + b'"}'
    )
    assert isinstance(event, TranscriptEvent)
    assert event.text == text


# -- tolerance -----------------------------------------------------------------------------------

NEW_FIELDS: dict[str, Any] = {
    "brand_new": {"x": [1, 2, {"y": None}]},
    "confidence": 0.93,
    "speaker": "A",
    "flags": [],
}


@AS_BYTES
@pytest.mark.parametrize(
    "obj",
    [
        {"type": "transcript", "is_final": True, "text": " a", "request_id": "r"},
        {"type": "flush_done", "request_id": "r"},
        {"type": "done", "request_id": "r"},
        CURRENT_ERROR,
    ],
    ids=["transcript", "flush_done", "done", "error"],
)
def test_unknown_fields_are_ignored(obj: dict[str, Any], as_bytes: bool) -> None:
    plain = parse_event(wire(obj, as_bytes))
    extended = parse_event(wire({**NEW_FIELDS, **obj, "zzz": "last"}, as_bytes))
    assert extended == plain


@AS_BYTES
@pytest.mark.parametrize(
    "obj",
    [
        {"type": "speech_started", "request_id": "r", "t": 1.25},
        {"type": "connected", "request_id": "r"},
        {"type": "turn.end", "transcript": "Hi", "request_id": "r"},
        {"type": "Transcript", "is_final": True, "text": "case matters"},
        {"type": "metadata", "request_id": 5, "nested": {"a": [1, None, True]}},
        {"type": "ping"},
    ],
)
def test_unknown_type_is_surfaced_with_all_its_data(obj: dict[str, Any], as_bytes: bool) -> None:
    event = parse_event(wire(obj, as_bytes))
    assert isinstance(event, UnknownEvent)
    assert event.type == obj["type"]
    assert event.data == obj
    rid = obj.get("request_id")
    assert event.request_id == (rid if isinstance(rid, str) else None)


# -- words ---------------------------------------------------------------------------------------


def words_of(words: object) -> list[Word] | None:
    event = parse_transcript(
        {"type": "transcript", "is_final": True, "text": "a b", "words": words}
    )
    return event.words


def test_words_row_shape() -> None:
    assert words_of(
        [{"word": "a", "start": 0, "end": 0.5}, {"word": "b", "start": 0.5, "end": 1.25}]
    ) == [Word("a", 0.0, 0.5), Word("b", 0.5, 1.25)]


def test_words_row_shape_ignores_unknown_fields() -> None:
    assert words_of([{"word": "a", "start": 0.8, "end": 1.0, "confidence": 0.9}]) == [
        Word("a", 0.8, 1.0)
    ]


def test_words_column_shape_of_the_sdk_types() -> None:
    assert words_of([{"words": ["a", "b"], "start": [0, 0.5], "end": [0.5, 1]}]) == [
        Word("a", 0.0, 0.5),
        Word("b", 0.5, 1.0),
    ]


def test_words_column_shape_groups_are_concatenated() -> None:
    assert words_of(
        [
            {"words": ["a"], "start": [0.0], "end": [0.25]},
            {"words": ["b", "c"], "start": [0.25, 0.5], "end": [0.5, 0.75]},
        ]
    ) == [Word("a", 0.0, 0.25), Word("b", 0.25, 0.5), Word("c", 0.5, 0.75)]


def test_words_null_and_absent_are_none() -> None:
    assert words_of(None) is None
    event = parse_transcript({"type": "transcript", "is_final": True, "text": ""})
    assert event.words is None


def test_words_empty_list_is_empty() -> None:
    assert words_of([]) == []


def test_word_is_frozen_and_positional() -> None:
    word = Word("hi", 0.5, 0.75)
    assert (word.word, word.start, word.end) == ("hi", 0.5, 0.75)
    with pytest.raises(AttributeError):
        word.word = "ho"  # type: ignore[misc]


@pytest.mark.parametrize(
    "words",
    [[1, 2], "a b", {"word": "a"}, [{"word": "a", "start": "0", "end": 1}], [{"word": "a"}], 7],
)
def test_words_of_an_unknown_shape_raise_protocol_error_on_use(words: object) -> None:
    event = parse_transcript({"type": "transcript", "is_final": True, "text": "t", "words": words})
    assert event.text == "t"  # decoding is lazy: the event itself parses
    with pytest.raises(ProtocolError, match="transcript 'words' has an unknown shape"):
        _ = event.words


# -- error status fallback -----------------------------------------------------------------------


@AS_BYTES
@pytest.mark.parametrize(
    ("obj", "status"),
    [
        ({"type": "error", "message": "Invalid model: x", "code": 400, "request_id": "r"}, 400),
        ({"type": "error", "message": "m", "code": 500, "status_code": 429}, 429),
        ({"type": "error", "message": "m", "status_code": 503}, 503),
        ({"type": "error", "message": "m", "status_code": None, "code": 502}, 502),
        ({"type": "error", "message": "m", "code": None}, None),
        ({"type": "error", "message": "m"}, None),
    ],
)
def test_error_status_falls_back_to_code(
    obj: dict[str, Any], status: int | None, as_bytes: bool
) -> None:
    event = parse_event(wire(obj, as_bytes))
    assert isinstance(event, ErrorEvent)
    assert event.status_code == status
    assert event.code == obj.get("code")


def test_error_fern_shape() -> None:
    event = parse_event(b'{"type":"error","request_id":"r","message":"boom"}')
    assert event == ErrorEvent(message="boom", request_id="r")


# -- malformed messages --------------------------------------------------------------------------


@AS_BYTES
@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("not json", "not a JSON object"),
        ("", "not a JSON object"),
        ('{"type":"done"', "not a JSON object"),
        ('{"type":"done"} trailing', "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('[{"type":"done"}]', "not a JSON object"),
        ('"transcript"', "not a JSON object"),
        ("42", "not a JSON object"),
        ("null", "not a JSON object"),
        ("true", "not a JSON object"),
        ("{}", "without a string 'type'"),
        ('{"text":"x","is_final":true}', "without a string 'type'"),
        ('{"type": 5}', "without a string 'type'"),
        ('{"type": null}', "without a string 'type'"),
        ('{"type": ["transcript"]}', "without a string 'type'"),
        ('{"type": {"name": "done"}}', "without a string 'type'"),
        ('{"type":"transcript","text":"x"}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":true}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":"yes","text":"x"}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":1,"text":"x"}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":null,"text":"x"}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":true,"text":null}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":true,"text":5}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":true,"text":["a"]}', "malformed 'transcript'"),
        ('{"type":"transcript","is_final":true,"text":"","request_id":5}', "malformed"),
        ('{"type":"transcript","is_final":true,"text":"","duration":"1.5"}', "malformed"),
        ('{"type":"transcript","is_final":true,"text":"","language":5}', "malformed"),
        ('{"type":"flush_done","request_id":5}', "malformed 'flush_done'"),
        ('{"type":"flush_done","request_id":null}', "malformed 'flush_done'"),
        ('{"type":"done","request_id":["r"]}', "malformed 'done'"),
        ('{"type":"error","status_code":"400"}', "malformed 'error'"),
        ('{"type":"error","status_code":400.5}', "malformed 'error'"),
        ('{"type":"error","code":"model_not_found"}', "malformed 'error'"),
        ('{"type":"error","message":5}', "malformed 'error'"),
        ('{"type":"error","done":"yes"}', "malformed 'error'"),
    ],
)
def test_malformed_messages_are_protocol_errors(raw: str, match: str, as_bytes: bool) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_event(raw.encode() if as_bytes else raw)


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b"\xfe\xff{}", b'{"type":"flush_done"}\xff'],
)
def test_invalid_utf8_outside_strings_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_event(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"transcript","is_final":true,"text":"\xff"}',
        b'{"type":"flush_done","request_id":"\xc3"}',
        b'{"type":"speech_started","x":"\xff"}',
    ],
    ids=["transcript-text", "flush_done-request_id", "unknown-type"],
)
def test_invalid_utf8_inside_a_string_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_event(raw)


def test_protocol_errors_do_not_chain_msgspec_errors() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_event(b'{"type":"transcript","is_final":"yes","text":"x"}')
    assert exc.value.__cause__ is None
    assert exc.value.__suppress_context__ is True
    assert "$.is_final" in str(exc.value)


# -- the type tag --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "tag"),
    [
        (TranscriptEvent, "transcript"),
        (FlushDoneEvent, "flush_done"),
        (DoneEvent, "done"),
        (ErrorEvent, "error"),
    ],
)
def test_type_class_attribute_equals_the_tag(cls: type[KnownEvent], tag: str) -> None:
    assert cls.type == tag
    assert cls.__struct_config__.tag == tag
    assert cls.__struct_config__.tag_field == "type"
    assert "type" not in cls.__struct_fields__  # a ClassVar, not a field to construct


def test_instances_share_the_class_tag() -> None:
    events: list[Event] = [
        TranscriptEvent(is_final=True, text=""),
        FlushDoneEvent(),
        DoneEvent(),
        ErrorEvent(),
        UnknownEvent(type="later", data={"type": "later"}),
    ]
    assert [e.type for e in events] == ["transcript", "flush_done", "done", "error", "later"]


# -- encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "wire_bytes"),
    [
        (
            TranscriptEvent(is_final=True, text=""),
            b'{"type":"transcript","is_final":true,"text":""}',
        ),
        (
            TranscriptEvent(is_final=False, text=" a", request_id="r", duration=0.5),
            b'{"type":"transcript","is_final":false,"text":" a","request_id":"r","duration":0.5}',
        ),
        (
            TranscriptEvent(
                is_final=True,
                text="x",
                words_raw=msgspec.Raw(b'[{"word":"x","start":0.0,"end":1.0}]'),
            ),
            b'{"type":"transcript","is_final":true,"text":"x",'
            b'"words":[{"word":"x","start":0.0,"end":1.0}]}',
        ),
        (FlushDoneEvent(request_id="r"), b'{"type":"flush_done","request_id":"r"}'),
        (DoneEvent(), b'{"type":"done"}'),
        (
            ErrorEvent(message="m", status_code=400, title="t", error_code="c", request_id="r"),
            b'{"type":"error","message":"m","status_code":400,"title":"t","error_code":"c",'
            b'"request_id":"r"}',
        ),
    ],
)
def test_encode_event_exact_bytes(event: KnownEvent, wire_bytes: bytes) -> None:
    assert encode_event(event) == wire_bytes


@pytest.mark.parametrize(
    "event",
    [
        TranscriptEvent(is_final=True, text="", request_id="r"),
        TranscriptEvent(is_final=False, text=" 日本 🙂 ", duration=1.25, language="ja"),
        TranscriptEvent(
            is_final=True,
            text=" a b",
            words_raw=msgspec.Raw(b'[{"word":"a","start":0.0,"end":0.5}]'),
        ),
        TranscriptEvent(is_final=True, text="n", words_raw=msgspec.Raw(b"null")),
        FlushDoneEvent(),
        FlushDoneEvent(request_id="r"),
        DoneEvent(request_id="r"),
        ErrorEvent(message="m", status_code=400, title="t", error_code="c", request_id="r"),
        ErrorEvent(message="old", code=500),
        ErrorEvent(message="m", doc_url="https://x", done=True),
    ],
)
def test_encode_event_round_trips(event: KnownEvent) -> None:
    again = parse_event(encode_event(event))
    assert type(again) is type(event)
    assert again == event
    if isinstance(event, TranscriptEvent):
        assert isinstance(again, TranscriptEvent)
        assert again.words == event.words


def test_old_code_is_mirrored_into_status_code_on_construction() -> None:
    assert ErrorEvent(message="m", code=500).status_code == 500
    assert json.loads(encode_event(ErrorEvent(code=500))) == {
        "type": "error",
        "status_code": 500,
        "code": 500,
    }
