"""The KV store's fast decoders (command_key, decode_command, decode_result: every write is
decoded on every replica) agree with the validating decoder on every record, and garbage or
another record still raises CodecError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novacron_core.codec import CodecError, decode, encode
from novacron_core.consensus.kv import (
    KVCommand,
    KVQuery,
    KVResult,
    command_key,
    decode_command,
    decode_result,
)

maybe_bytes = st.one_of(st.none(), st.binary(max_size=64))
commands = st.builds(
    KVCommand,
    st.sampled_from(["put", "delete", "cas"]),
    st.text(max_size=40),
    maybe_bytes,
    maybe_bytes,
    st.text(max_size=8),
    st.integers(0, (1 << 64) - 1),
)
results = st.builds(
    KVResult,
    st.booleans(),
    maybe_bytes,
    st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2),
    st.booleans(),
)


@given(commands)
def test_commands_decode_as_the_validating_decoder_does(cmd: KVCommand) -> None:
    data = encode(cmd)
    assert decode_command(data) == decode(data, KVCommand) == cmd
    assert command_key(data) == cmd.key


@given(results)
def test_results_decode_as_the_validating_decoder_does(res: KVResult) -> None:
    data = encode(res)
    assert decode_result(data) == decode(data, KVResult) == res


def test_garbage_or_another_record_raises_as_decode_does() -> None:
    for fast in (command_key, decode_command, decode_result):
        with pytest.raises(CodecError):
            fast(b"\xc1garbage")
        with pytest.raises(CodecError):
            fast(encode(KVQuery("k")))
