"""One binary codec for every message: typed, versioned records in msgpack, length-prefixed.

A record is a frozen dataclass registered with :func:`record` under a stable ``type_id``. On
the wire it is the msgpack array ``[type_id, version, field1, field2, ...]``; nested records
use the same form, so a decoder driven by the field annotations can validate everything it
builds. Decoding untrusted bytes raises :class:`CodecError` and nothing else: a malformed frame
from a peer must cost that peer its connection, never crash the node.

Compatibility: a newer sender may append fields (older receivers ignore the extra ones); an
older sender may omit trailing fields that have defaults.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
_LEN = struct.Struct(">I")


class CodecError(ValueError):
    """Bytes that are not a valid frame or record. The only error decoding ever raises."""


Validator = Callable[[Any], Any]
_T = TypeVar("_T")

_BY_ID: dict[int, type[Any]] = {}
_SPEC: dict[type[Any], tuple[int, int, list[tuple[str, Validator, bool]]]] = {}
_NAMES: dict[type[Any], tuple[str, ...]] = {}  # a record's field names, in order
_PLAIN = frozenset({str, bytes, int, float, bool, type(None)})  # to_wire leaves these as is


def record(type_id: int, version: int = 1) -> Callable[[type[_T]], type[_T]]:
    """Register a frozen dataclass as a wire record under ``type_id`` (stable forever)."""

    def wrap(cls: type[_T]) -> type[_T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass")
        if type_id in _BY_ID and _BY_ID[type_id] is not cls:
            raise TypeError(f"type_id {type_id} taken by {_BY_ID[type_id].__name__}")
        _BY_ID[type_id] = cls
        _SPEC[cls] = (type_id, version, [])  # fields compiled lazily (forward refs)
        return cls

    return wrap


def _fields(cls: type[Any]) -> list[tuple[str, Validator, bool]]:
    spec = _SPEC[cls]
    if not spec[2] and dataclasses.fields(cls):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            has_default = (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            spec[2].append((f.name, _validator(hints[f.name]), has_default))
    return spec[2]


# ---------------------------------------------------------------- encoding


def to_wire(obj: Any) -> Any:
    """Turn records (and containers of them) into plain msgpack-able values."""
    cls = type(obj)
    if cls in _SPEC:
        type_id, version, _ = _SPEC[cls]
        names = _NAMES.get(cls)
        if names is None:  # (dataclasses.fields per call was most of an encode's time)
            names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
        out = [type_id, version]
        for n in names:
            v = getattr(obj, n)
            out.append(v if type(v) in _PLAIN else to_wire(v))
        return out
    if cls is list or cls is tuple:
        return [to_wire(x) for x in obj]
    if cls is dict:
        return {k: to_wire(v) for k, v in obj.items()}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset):
        return [to_wire(x) for x in sorted(obj)]
    return obj


def encode(obj: Any) -> bytes:
    """Record -> msgpack payload (no length prefix)."""
    out: bytes = msgpack.packb(to_wire(obj), use_bin_type=True)
    return out


def encode_parts(obj: Any, large: int = 1 << 20) -> list[bytes]:
    """``encode(obj)`` in pieces whose concatenation is the same bytes, a record's large
    ``bytes`` last field (a snapshot's data) as its own piece: packing it copies it, holding
    the GIL for as long as the copy takes (0.45 s for 138 MiB under load)."""
    names: tuple[str, ...] = ()
    if type(obj) in _SPEC:
        names = tuple(f.name for f in dataclasses.fields(obj))
    last = getattr(obj, names[-1]) if names else None
    # (from 64 KiB on, msgpack packs bytes as bin32: the header spliced in below)
    if not names or type(last) is not bytes or len(last) < max(large, 1 << 16):
        return [encode(obj)]
    head = encode(dataclasses.replace(obj, **{names[-1]: b""}))
    # b"" is packed last as bin8 of length 0 (c4 00); a bin32 header goes in its place
    assert head.endswith(b"\xc4\x00")
    return [head[:-2], b"\xc6" + _LEN.pack(len(last)), last]


def frame(obj: Any, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Record -> length-prefixed frame."""
    payload = encode(obj)
    if len(payload) > max_frame:
        raise CodecError(f"frame of {len(payload)} bytes exceeds the limit of {max_frame}")
    return _LEN.pack(len(payload)) + payload


# ---------------------------------------------------------------- decoding


def decode(
    payload: bytes, expected: type[_T] | None = None, max_size: int = DEFAULT_MAX_FRAME
) -> _T:
    """msgpack payload -> record, validated against its field annotations."""
    if len(payload) > max_size:
        raise CodecError(f"payload of {len(payload)} bytes exceeds the limit of {max_size}")
    try:
        raw = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=False,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=max_size,
            max_map_len=max_size,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises a zoo of types for garbage
        raise CodecError(f"not msgpack: {e}") from None
    try:
        obj = _record_from_wire(raw, expected)
    except CodecError:
        raise
    except RecursionError:
        raise CodecError("record nested too deeply") from None
    except Exception as e:  # a constructor's own checks, bad enums, ...
        raise CodecError(f"invalid record: {e}") from None
    return typing.cast(_T, obj)


def _record_from_wire(raw: Any, expected: type[Any] | None) -> Any:
    if not isinstance(raw, list) or len(raw) < 2:
        raise CodecError("a record is an array [type_id, version, fields...]")
    type_id, _version = raw[0], raw[1]
    if type(type_id) is not int or type(_version) is not int:
        raise CodecError("record header must be two integers")
    cls = _BY_ID.get(type_id)
    if cls is None:
        raise CodecError(f"unknown record type {type_id}")
    if expected is not None and not issubclass(cls, expected):
        raise CodecError(f"expected {expected.__name__}, got {cls.__name__}")
    fields = _fields(cls)
    values = raw[2:]
    if len(values) < len(fields) and not all(d for _, _, d in fields[len(values) :]):
        raise CodecError(f"{cls.__name__}: missing field {fields[len(values)][0]!r}")
    kwargs = {}
    for (name, check, _), value in zip(fields, values, strict=False):
        try:
            kwargs[name] = check(value)
        except CodecError as e:
            raise CodecError(f"{cls.__name__}.{name}: {e}") from None
    return cls(**kwargs)


def _validator(tp: Any) -> Validator:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return lambda v: v
    if tp is type(None):
        return _exact(type(None), "nil")
    if tp is bool:
        return _exact(bool, "a boolean")
    if tp is int:
        return _exact(int, "an integer")
    if tp is str:
        return _exact(str, "a string")
    if tp is bytes:
        return _exact(bytes, "bytes")
    if tp is float:

        def as_float(v: Any) -> float:
            if type(v) is float or type(v) is int:
                return float(v)
            raise CodecError("expected a number")

        return as_float
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_cls = tp

        def as_enum(v: Any) -> Any:
            try:
                return enum_cls(v)
            except (ValueError, TypeError):
                raise CodecError(f"not a {enum_cls.__name__}: {v!r}") from None

        return as_enum
    if isinstance(tp, type) and tp in _SPEC:
        rec = tp
        return lambda v: _record_from_wire(v, rec)
    if origin in (typing.Union, types.UnionType):
        checks = [_validator(a) for a in args]
        optional = type(None) in args

        def any_of(v: Any) -> Any:
            if v is None and optional:  # the common case, without a raised CodecError
                return None
            for c in checks:
                try:
                    return c(v)
                except CodecError:
                    continue
            raise CodecError(f"no alternative of {tp} matches {type(v).__name__}")

        return any_of
    if origin in (list, tuple, set, frozenset):
        if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
            items = [_validator(a) for a in args]

            def fixed(v: Any) -> Any:
                if not isinstance(v, list) or len(v) != len(items):
                    raise CodecError(f"expected an array of {len(items)}")
                return tuple(c(x) for c, x in zip(items, v, strict=True))

            return fixed
        item = _validator(args[0]) if args else (lambda v: v)
        make: Callable[[Any], Any] = origin

        def seq(v: Any) -> Any:
            if not isinstance(v, list):
                raise CodecError("expected an array")
            return make(item(x) for x in v)

        return seq
    if origin is dict:
        kc = _validator(args[0]) if args else (lambda v: v)
        vc = _validator(args[1]) if args else (lambda v: v)

        def mapping(v: Any) -> Any:
            if not isinstance(v, dict):
                raise CodecError("expected a map")
            return {kc(k): vc(x) for k, x in v.items()}

        return mapping
    raise TypeError(f"codec cannot carry fields of type {tp!r}")


def _exact(tp: type, what: str) -> Validator:
    def check(v: Any) -> Any:
        if type(v) is not tp:
            raise CodecError(f"expected {what}, got {type(v).__name__}")
        return v

    return check


# ---------------------------------------------------------------- framing


class FrameDecoder:
    """Sans-IO reassembly of length-prefixed frames from a byte stream.

    Memory is bounded by ``max_frame``: a length prefix above it raises :class:`CodecError`
    before any of the frame is buffered.
    """

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete payload now available."""
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n > self.max_frame:
                self._buf = bytearray()
                raise CodecError(f"frame of {n} bytes announced; the limit is {self.max_frame}")
            if len(buf) - pos - 4 < n:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)
