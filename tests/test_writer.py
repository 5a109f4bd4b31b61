"""The writer's own binary frames: what websockets' parser reads back, byte for byte."""

from __future__ import annotations

import os

import pytest
from websockets.frames import OP_BINARY, Frame
from websockets.streams import StreamReader

from cartesia_stt_async._writer import FrameWriter

# Every test here runs on asyncio's loop and on uvloop (--loops).
pytestmark = pytest.mark.both_loops


def parse_as_server(data: bytes) -> Frame:
    """Parse one client frame the way a server does (it must be masked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("the frame was incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 3200, 65535, 65536, 100_000])
def test_binary_frames_parse_back_to_their_data(size: int) -> None:
    data = os.urandom(size)
    frame = parse_as_server(FrameWriter().binary(data))
    assert frame.opcode == OP_BINARY and frame.fin
    assert frame.data == data


def test_every_frame_gets_a_fresh_mask_across_draws() -> None:
    writer = FrameWriter()
    masks = set()
    for _ in range(2100):  # more than two draws of 1024 masks
        frame = writer.binary(b"\x00" * 8)
        masks.add(frame[2:6])  # a zero payload masked is the mask itself, after the header
        assert parse_as_server(frame).data == b"\x00" * 8
    assert len(masks) > 2000  # 32-bit random masks: collisions are rare
