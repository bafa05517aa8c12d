"""The runtime state file of an active pool: plain, versioned JSON, written and read only by
poolbackend.

The state is the tool's own data, not user input: it does not go through the libvirt checks,
the RELAX NG explanations or the 1 MiB limit on XML input (a 4096-LUN pool writes ~2 MB). It
is checked by *type* on load instead: every field of the model dataclasses must be present
(or have a default) and have its declared type, integers must fit in 64 unsigned bits and
floats must be finite, so a damaged file (garbage, cut off, wrong types, huge numbers) fails
with one :class:`StateFileError` line and never with a traceback or a huge allocation.

Layout (version 1)::

    {"format": "poolbackend-pool-state", "version": 1,
     "pool": {<PoolDef fields>}, "state": {<PoolState fields, volumes: [<Volume>, ...]>}}

The codec is generic over the dataclass fields, so a field added to :class:`Volume`,
:class:`PoolState` or :class:`PoolDef` with a default is written and read without touching
this module, and files written before the field existed still load. A :class:`Lun` (the
REPORT LUNS entry as reported) is stored as its 16 hex digits. After the types, the few
rules that tie fields together are checked (:func:`_check`): the reported entry decodes to
the volume's number, and the activation id is hexadecimal. An incompatible change
bumps :data:`VERSION`; a file of another version is reported as damaged (the pool is then
shown inactive until it is started again, see :mod:`poolbackend.pool.store`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from poolbackend.errors import ConfigError
from poolbackend.pool.model import PoolDef, PoolState
from poolbackend.scsi.errors import ScsiParseError
from poolbackend.scsi.lun import Lun

FORMAT = "poolbackend-pool-state"
VERSION = 1
MAX_STATE_BYTES = 256 << 20
"""A sanity bound on the file (not a user-input limit): ~100x a 16384-LUN pool."""
MAX_INT = (1 << 64) - 1

__all__ = ["FORMAT", "MAX_STATE_BYTES", "VERSION", "StateFileError", "dumps", "loads"]


class StateFileError(ConfigError):
    """The state file cannot be used; ``str()`` says why in one line (without the path)."""


# Both directions run a fast pass that builds no location strings; only when it finds a
# problem is the value walked again with locations (``where``) to say where it is.


class _Retry(Exception):
    """Raised by a fast pass (``where`` is None): run again with locations for the message."""


def _fail(where: str | None, message: str) -> StateFileError:
    if where is None:
        raise _Retry
    return StateFileError(f"{where}{message}")


def _sub(where: str | None, part: str) -> str | None:
    return None if where is None else where + part


# ----------------------------------------------------------------------------- encoding


def _plain(value: object, where: str | None) -> object:
    """``value`` as JSON data; refuses what :func:`loads` would refuse (so we never write a
    file we cannot read back, like the 9.4e21-byte capacity of an empty tgt LUN once did)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if not 0 <= value <= MAX_INT:
            raise _fail(where, f" = {value} does not fit in 64 unsigned bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(where, f" = {value} is not a finite number")
        return value
    if isinstance(value, tuple):
        return [_plain(item, _sub(where, f"[{i}]")) for i, item in enumerate(value)]
    if isinstance(value, Lun):
        return value.hex
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            name: _plain(getattr(value, name), _sub(where, "." + name))
            for name in _fields(type(value))
        }
    raise _fail(where, f": cannot store a {type(value).__name__}")


Encoder = Callable[[Any], object]
_ENCODERS: dict[type, Encoder] = {}


def _encode_int(value: int) -> object:
    if not 0 <= value <= MAX_INT:
        raise _Retry
    return value


def _encode_float(value: float) -> object:
    if not math.isfinite(value):
        raise _Retry
    return value


def _same(value: object) -> object:
    return value


def _encoder(annotation: object) -> Encoder:
    """The fast pass of :func:`_plain` for one field type (built once per type)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        inner = _encoder(next(a for a in args if a is not type(None)))
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        item = _encoder(args[0])
        return lambda value: [item(v) for v in value]
    if annotation in (str, bool):
        return _same
    if annotation is int:
        return _encode_int
    if annotation is float:
        return _encode_float
    if annotation is Lun:
        return lambda value: value.hex
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass_encoder(annotation)
    raise TypeError(f"unsupported state field type {annotation!r}")


def _dataclass_encoder(cls: type) -> Encoder:
    cached = _ENCODERS.get(cls)
    if cached is not None:
        return cached
    plan: list[tuple[str, Encoder]] = []

    def encode(value: Any) -> object:
        if type(value) is not cls:
            raise _Retry
        if not plan:  # built on first use: the model's types refer to each other
            hints = typing.get_type_hints(cls)
            plan.extend((name, _encoder(hints[name])) for name in _fields(cls))
        return {name: enc(getattr(value, name)) for name, enc in plan}

    _ENCODERS[cls] = encode
    return encode


def dumps(pool: PoolDef, state: PoolState) -> bytes:
    """The state file for ``pool`` (the live definition) and ``state``."""
    try:
        plain = {
            "pool": _dataclass_encoder(PoolDef)(pool),
            "state": _dataclass_encoder(PoolState)(state),
        }
    except (_Retry, AttributeError, TypeError):  # say where, with the slow walk
        plain = {"pool": _plain(pool, "pool"), "state": _plain(state, "state")}
    doc = {"format": FORMAT, "version": VERSION, **plain}
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


# ----------------------------------------------------------------------------- decoding

Decoder = Callable[[object, "str | None"], object]
_FIELDS: dict[type, tuple[str, ...]] = {}
_DECODERS: dict[type, Decoder] = {}


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _FIELDS[cls] = names
    return names


def _bad(where: str | None, expected: str, value: object) -> StateFileError:
    if where is None:
        raise _Retry
    shown = type(value).__name__ if not isinstance(value, (bool, int, float)) else repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and len(shown) > 24:
        shown = f"an integer of {len(shown)} digits"
    return StateFileError(f"{where} must be {expected}, not {shown}")


def _decode_str(value: object, where: str | None) -> object:
    if not isinstance(value, str):
        raise _bad(where, "a string", value)
    return value


def _decode_bool(value: object, where: str | None) -> object:
    if not isinstance(value, bool):
        raise _bad(where, "true or false", value)
    return value


def _decode_int(value: object, where: str | None) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise _bad(where, "an integer from 0 to 2^64-1", value)
    return value


def _decode_float(value: object, where: str | None) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(where, "a number", value)
    if not math.isfinite(value) or abs(value) > MAX_INT:
        raise _bad(where, "a finite number", value)
    return float(value)


def _decode_lun(value: object, where: str | None) -> object:
    if not isinstance(value, str):
        raise _bad(where, "16 hex digits", value)
    try:
        return Lun.from_hex(value)
    except ScsiParseError as exc:
        raise _fail(where, f": {exc}") from None


def _decoder(annotation: object) -> Decoder:
    """A checking decoder for one field type of the model (built once per type)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"unsupported state field type {annotation!r}")
        decode_inner = _decoder(inner[0])

        def optional(value: object, where: str | None) -> object:
            return None if value is None else decode_inner(value, where)

        return optional
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported state field type {annotation!r}")
        decode_item = _decoder(args[0])

        def sequence(value: object, where: str | None) -> object:
            if not isinstance(value, list):
                raise _bad(where, "a list", value)
            if where is None:
                return tuple([decode_item(item, None) for item in value])
            return tuple(decode_item(item, f"{where}[{i}]") for i, item in enumerate(value))

        return sequence
    if annotation is str:
        return _decode_str
    if annotation is bool:
        return _decode_bool
    if annotation is int:
        return _decode_int
    if annotation is float:
        return _decode_float
    if annotation is Lun:
        return _decode_lun
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass_decoder(annotation)
    raise TypeError(f"unsupported state field type {annotation!r}")


_MISSING = object()
_FAST: dict[type, Callable[[object], object]] = {}


def _fast_check(annotation: object, var: str, names: dict[str, object]) -> list[str]:
    """Statements that check (and convert) ``var`` as the fast pass of :func:`_decoder`
    would, raising _Retry on anything it would refuse (types exact, as json.loads makes)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in args if a is not type(None)]
        body = _fast_check(inner, var, names)
        return [f"if {var} is not None:"] + ["    " + line for line in body]
    if annotation is str:
        return [f"if type({var}) is not str: raise _Retry"]
    if annotation is bool:
        return [f"if type({var}) is not bool: raise _Retry"]
    if annotation is int:
        return [f"if type({var}) is not int or not 0 <= {var} <= MAX_INT: raise _Retry"]
    if origin is tuple and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
        fn = f"_fast_{args[0].__name__}"
        names[fn] = _fast_decoder(args[0])
        return [
            f"if type({var}) is not list: raise _Retry",
            f"{var} = tuple([{fn}(item) for item in {var}])",
        ]
    # anything else (floats, LUNs, other tuples, nested objects): the generic decoder
    fn = f"_generic_{len(names)}"
    names[fn] = _decoder(annotation)
    return [f"{var} = {fn}({var}, None)"]


def _fast_decoder(cls: type) -> Callable[[object], object]:
    """The fast pass of :func:`_dataclass_decoder` for ``cls`` as one generated function
    (a 1024-LUN state decodes in a third of the generic walk's time); it raises _Retry on
    anything the generic walk would refuse, which then runs with locations."""
    cached = _FAST.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    names: dict[str, object] = {"_Retry": _Retry, "MAX_INT": MAX_INT, "_MISSING": _MISSING}
    names["_cls"] = cls
    lines = ["def fast(value):", "    if type(value) is not dict: raise _Retry", "    kw = {}"]
    for f in dataclasses.fields(cls):
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        lines.append(f"    x = value.get({f.name!r}, _MISSING)")
        lines.append("    if x is not _MISSING:")
        lines += ["        " + line for line in _fast_check(hints[f.name], "x", names)]
        lines.append(f"        kw[{f.name!r}] = x")
        if not has_default:
            lines.append("    else: raise _Retry")
    lines.append("    return _cls(**kw)")
    exec("\n".join(lines), names)  # the source is built above from the model's fields
    fast = typing.cast(Callable[[object], object], names["fast"])
    _FAST[cls] = fast
    return fast


def _dataclass_decoder(cls: type) -> Decoder:
    cached = _DECODERS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    plan: list[tuple[str, Decoder, bool]] = []  # name, decoder, has a default
    fast: list[Callable[[object], object]] = []

    def decode(value: object, where: str | None) -> object:
        if where is None:
            if not fast:  # built on first use: the model's types refer to each other
                fast.append(_fast_decoder(cls))
            return fast[0](value)
        if not isinstance(value, dict):
            raise _bad(where, "an object", value)
        if not plan:  # built on first use: the model's types refer to each other
            for f in dataclasses.fields(cls):
                has_default = (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                )
                plan.append((f.name, _decoder(hints[f.name]), has_default))
        kwargs: dict[str, Any] = {}
        for name, field_decoder, has_default in plan:
            if name in value:  # the walk with locations: the fast pass returned above
                kwargs[name] = field_decoder(value[name], f"{where}.{name}")
            elif not has_default:
                raise _fail(where, f".{name} is missing")
        return cls(**kwargs)

    _DECODERS[cls] = decode
    return decode


def loads(data: bytes) -> tuple[PoolDef, PoolState]:
    """The live definition and state in ``data``; :class:`StateFileError` if it is damaged."""
    if len(data) > MAX_STATE_BYTES:
        raise StateFileError(f"{len(data)} bytes, more than the {MAX_STATE_BYTES} a state can be")
    if data[:1] == b"<" or data.lstrip()[:5] == b"<?xml":
        raise StateFileError("written by an older poolbackend (XML); not read by this version")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StateFileError(f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise StateFileError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise StateFileError(f"not valid JSON: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateFileError(f'not a poolbackend state file (no "format": "{FORMAT}")')
    version = doc.get("version")
    if version != VERSION:
        shown = repr(version)[:24]
        raise StateFileError(f"format version {shown}; this poolbackend reads version {VERSION}")
    try:
        pool = _dataclass_decoder(PoolDef)(doc.get("pool"), None)
        state = _dataclass_decoder(PoolState)(doc.get("state"), None)
    except _Retry:
        pool = _dataclass_decoder(PoolDef)(doc.get("pool"), "pool")
        state = _dataclass_decoder(PoolState)(doc.get("state"), "state")
    assert isinstance(pool, PoolDef) and isinstance(state, PoolState)
    _check(state)
    return pool, state


def _check(state: PoolState) -> None:
    """The rules between fields that types cannot say."""
    if any(c not in "0123456789abcdef" for c in state.activation):
        raise StateFileError("state.activation must be hexadecimal")
    for i, volume in enumerate(state.volumes):
        if volume.reported is not None and volume.reported.number != volume.lun:
            raise StateFileError(
                f"state.volumes[{i}].reported is LUN {volume.reported}, not {volume.lun}"
            )
