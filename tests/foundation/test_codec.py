from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.codec import (
    CodecError,
    FrameDecoder,
    decode,
    encode,
    frame,
    record,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@record(9001)
@dataclass(frozen=True, slots=True)
class Inner:
    name: str
    weight: float


@record(9002)
@dataclass(frozen=True, slots=True)
class Outer:
    term: int
    payload: bytes
    tags: list[str]
    inner: Inner | None
    color: Color
    pairs: dict[str, int] = field(default_factory=dict)
    pos: tuple[int, int] = (0, 0)


@record(9003, version=2)
@dataclass(frozen=True, slots=True)
class Evolving:
    a: int
    b: str = "default"


outers = st.builds(
    Outer,
    term=st.integers(min_value=-(2**63), max_value=2**64 - 1),
    payload=st.binary(max_size=64),
    tags=st.lists(st.text(max_size=8), max_size=5),
    inner=st.none() | st.builds(Inner, st.text(max_size=8), st.floats(allow_nan=False)),
    color=st.sampled_from(Color),
    pairs=st.dictionaries(st.text(max_size=4), st.integers(0, 1000), max_size=4),
    pos=st.tuples(st.integers(0, 100), st.integers(0, 100)),
)


@given(outers)
def test_records_round_trip(msg: Outer) -> None:
    assert decode(encode(msg)) == msg
    assert decode(encode(msg), Outer) == msg


@given(st.binary(max_size=256))
@settings(max_examples=400)
def test_random_bytes_raise_only_codec_error(data: bytes) -> None:
    try:
        decode(data)
    except CodecError:
        pass


@given(outers, st.data())
def test_truncated_or_flipped_payloads_raise_only_codec_error(
    msg: Outer, data: st.DataObject
) -> None:
    raw = bytearray(encode(msg))
    cut = data.draw(st.integers(0, len(raw)))
    flip = data.draw(st.integers(0, max(len(raw) - 1, 0)))
    if raw:
        raw[flip] ^= data.draw(st.integers(1, 255))
    for candidate in (bytes(raw[:cut]), bytes(raw)):
        try:
            decode(candidate)
        except CodecError:
            pass


def test_wrong_field_type_is_rejected_naming_the_field() -> None:
    bad = msgpack.packb([9002, 1, "not-an-int", b"", [], None, "red", {}, [0, 0]])
    with pytest.raises(CodecError, match=r"Outer\.term"):
        decode(bad)


def test_unknown_enum_value_is_rejected() -> None:
    bad = msgpack.packb([9002, 1, 1, b"", [], None, "green", {}, [0, 0]])
    with pytest.raises(CodecError, match="Color"):
        decode(bad)


def test_unknown_record_type_is_rejected() -> None:
    with pytest.raises(CodecError, match="unknown record type"):
        decode(msgpack.packb([123456, 1]))


def test_expected_type_mismatch_is_rejected() -> None:
    with pytest.raises(CodecError, match="expected Inner"):
        decode(encode(Evolving(1)), Inner)


def test_older_sender_may_omit_defaulted_fields_and_newer_may_add_fields() -> None:
    assert decode(msgpack.packb([9003, 1, 7])) == Evolving(7, "default")
    assert decode(msgpack.packb([9003, 3, 7, "x", "future-field"])) == Evolving(7, "x")
    with pytest.raises(CodecError, match="missing field 'a'"):
        decode(msgpack.packb([9003, 1]))


def test_deep_nesting_is_a_codec_error_not_a_crash() -> None:
    # 100,000 one-element arrays inside each other (fixarray header 0x91), then nil
    payload = b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(CodecError):
        decode(payload)


def test_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(CodecError, match="exceeds"):
        decode(b"\x00" * 2048, max_size=1024)


def test_announced_array_larger_than_limit_does_not_allocate() -> None:
    # array32 header announcing 2**31 elements in a 5-byte payload
    with pytest.raises(CodecError):
        decode(b"\xdd\x80\x00\x00\x00", max_size=1024)


@given(st.lists(outers, max_size=5), st.lists(st.integers(1, 17), max_size=20))
def test_frame_decoder_reassembles_any_chunking(msgs: list[Outer], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in msgs)
    dec = FrameDecoder()
    got: list[bytes] = []
    pos = 0
    for c in cuts:
        got += dec.feed(stream[pos : pos + c])
        pos += c
    got += dec.feed(stream[pos:])
    assert [decode(p) for p in got] == msgs
    assert dec.buffered == 0


def test_frame_decoder_refuses_oversized_announcement() -> None:
    dec = FrameDecoder(max_frame=1000)
    with pytest.raises(CodecError, match="limit is 1000"):
        dec.feed(struct.pack(">I", 10_000_000) + b"xx")
    assert dec.buffered == 0


def test_frame_refuses_to_build_oversized_frames() -> None:
    with pytest.raises(CodecError):
        frame(Outer(1, b"x" * 2000, [], None, Color.RED), max_frame=1000)
