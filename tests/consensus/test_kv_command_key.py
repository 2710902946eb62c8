"""command_key: the publisher's fast read of a committed command's key agrees with the
validating decoder, and garbage still raises CodecError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novacron_core.codec import CodecError, decode, encode
from novacron_core.consensus.kv import KVCommand, KVQuery, command_key


@given(st.text(max_size=40), st.one_of(st.none(), st.binary(max_size=64)), st.text(max_size=8))
def test_the_key_is_the_decoded_commands_key(key: str, value: bytes | None, client: str) -> None:
    data = encode(KVCommand("put", key, value, None, client, 3))
    assert command_key(data) == decode(data, KVCommand).key == key


def test_not_a_command_raises_as_decode_does() -> None:
    with pytest.raises(CodecError):
        command_key(b"\xc1garbage")
    with pytest.raises(CodecError):
        command_key(encode(KVQuery("k")))
