"""Typed events the sans-IO :class:`~poolbackend.iscsi.connection.Connection` emits."""

from __future__ import annotations

from dataclasses import dataclass

from poolbackend.iscsi.login import SessionParams


@dataclass(frozen=True, slots=True)
class ScsiResult:
    """Completion of a SCSI command: status, sense and the Data-In bytes received."""

    status: int
    data: bytes | bytearray | memoryview = b""
    sense: bytes = b""
    residual: int = 0
    underflow: bool = False
    overflow: bool = False


@dataclass(frozen=True, slots=True)
class LoginComplete:
    params: SessionParams


@dataclass(frozen=True, slots=True)
class LoginRedirected:
    address: str
    permanent: bool


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    itt: int
    result: ScsiResult


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """A task ended without a SCSI status: iSCSI response != 0, Reject, or an abort."""

    itt: int
    reason: str


@dataclass(frozen=True, slots=True)
class TextReply:
    itt: int
    pairs: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class NopReply:
    itt: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TmfReply:
    """A task management response; the SCSI tasks it ended came just before it, each as a
    :class:`TaskFailed` ("aborted by ...")."""

    itt: int
    response: int


@dataclass(frozen=True, slots=True)
class LogoutReply:
    itt: int
    response: int
    time2wait: int
    time2retain: int


@dataclass(frozen=True, slots=True)
class AsyncEvent:
    """Asynchronous Message: 1 logout requested, 2/3 connection(s) will drop, 4 renegotiate."""

    event: int
    parameters: tuple[int, int, int]
    sense: bytes


Event = (
    LoginComplete
    | LoginRedirected
    | TaskCompleted
    | TaskFailed
    | TextReply
    | NopReply
    | TmfReply
    | LogoutReply
    | AsyncEvent
)
