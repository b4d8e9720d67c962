"""Exceptions raised by the binding.

Every error reply of the server (``{"ok": false, "error": CODE, "message": ...}``)
becomes an instance of the :class:`Error` subclass registered for ``CODE``
(an unknown code gives a plain :class:`Error`). :class:`Timeout` is raised when
no reply arrives in time; it is both an :class:`Error` and a built-in
:class:`TimeoutError`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "Error", "Timeout", "ProtocolError", "BadRequest", "UnknownOp",
    "UnsupportedVersion", "NotFound", "Conflict", "UnknownMember",
    "IllegalGeneration", "NotOwner", "Compacted", "LimitExceeded",
    "NotLeader", "Internal", "error_from_reply", "ERROR_CLASSES",
]


class Error(Exception):
    """Base class of every exception of this package.

    Attributes:
        code: the server's error code (``"NOT_FOUND"``, ...), ``"TIMEOUT"`` for
            :class:`Timeout`, ``"PROTOCOL"`` for :class:`ProtocolError`.
        message: the server's human-readable message.
        reply: the whole error reply (a dict), or ``None``.
        retried: true when an earlier try of the same call went unanswered
            (a client of several nodes then tries again elsewhere): the
            operation may have been applied by that try, so e.g. a
            ``NotFound`` may answer a ``deregister`` that did succeed.
    """

    code: str = "ERROR"
    retried: bool = False

    def __init__(self, code: Optional[str] = None, message: str = "",
                 reply: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.reply: Optional[Dict[str, Any]] = dict(reply) if reply is not None else None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class Timeout(Error, TimeoutError):
    """No reply arrived within the client's timeout (code ``"TIMEOUT"``).

    Also a built-in :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    The request may or may not have been applied by the server.
    """

    code = "TIMEOUT"


class ProtocolError(Error):
    """The server sent something this binding cannot understand (code ``"PROTOCOL"``)."""

    code = "PROTOCOL"


class BadRequest(Error):
    """``BAD_REQUEST``: a key is missing, has the wrong type or breaks a limit."""

    code = "BAD_REQUEST"


class UnknownOp(Error):
    """``UNKNOWN_OP``: the server does not know the operation."""

    code = "UNKNOWN_OP"


class UnsupportedVersion(Error):
    """``UNSUPPORTED_VERSION``: the protocol version ``v`` is above the server's."""

    code = "UNSUPPORTED_VERSION"


class NotFound(Error):
    """``NOT_FOUND``: the named service, group, member or topic does not exist."""

    code = "NOT_FOUND"


class Conflict(Error):
    """``CONFLICT``: the request contradicts existing state."""

    code = "CONFLICT"


class UnknownMember(Error):
    """``UNKNOWN_MEMBER``: the group member is unknown (expired, left or fenced): rejoin."""

    code = "UNKNOWN_MEMBER"


class IllegalGeneration(Error):
    """``ILLEGAL_GENERATION``: the generation given is not the group's current one."""

    code = "ILLEGAL_GENERATION"


class NotOwner(Error):
    """``NOT_OWNER``: offset commit for a partition not assigned to that member."""

    code = "NOT_OWNER"


class Compacted(Error):
    """``COMPACTED``: ``events_since`` asked for history the server no longer keeps.

    Attributes:
        oldest: the smallest event ``seq`` the server still keeps.
    """

    code = "COMPACTED"

    def __init__(self, code: Optional[str] = None, message: str = "",
                 reply: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(code, message, reply)
        self.oldest: Optional[int] = (reply or {}).get("oldest")


class LimitExceeded(Error):
    """``LIMIT_EXCEEDED``: a server-wide limit (services, groups, members, size) is reached."""

    code = "LIMIT_EXCEEDED"


class NotLeader(Error):
    """``NOT_LEADER``: this node is a follower.

    Attributes:
        leader: the leader's request endpoint, or ``None`` while electing.
    """

    code = "NOT_LEADER"

    def __init__(self, code: Optional[str] = None, message: str = "",
                 reply: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(code, message, reply)
        self.leader: Optional[str] = (reply or {}).get("leader")


class Internal(Error):
    """``INTERNAL``: a server bug; the request did not change state."""

    code = "INTERNAL"


#: The class raised for each server error code.
ERROR_CLASSES: Dict[str, Type[Error]] = {
    cls.code: cls
    for cls in (BadRequest, UnknownOp, UnsupportedVersion, NotFound, Conflict,
                UnknownMember, IllegalGeneration, NotOwner, Compacted,
                LimitExceeded, NotLeader, Internal)
}


def error_from_reply(reply: Mapping[str, Any]) -> Error:
    """Build the exception for an error reply (``{"ok": false, ...}``)."""
    code = reply.get("error")
    if not isinstance(code, str):
        code = "ERROR"
    message = reply.get("message")
    if not isinstance(message, str):
        message = ""
    cls = ERROR_CLASSES.get(code, Error)
    return cls(code, message, reply)
