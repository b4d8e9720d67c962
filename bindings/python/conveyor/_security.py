"""CurveZMQ credentials of a client: :class:`Security`, and a reader of the
czmq certificate files (zcert, in ZPL) that ``conveyorctl keygen`` writes.

A daemon started with ``--curve-secret FILE --curve-clients DIR`` encrypts
both its sockets and answers (and publishes to) only the clients whose
public certificate is in ``DIR``. Such a client needs the server's public
key and its own key pair; every socket the binding opens (the DEALER of
requests and the SUB of events) is then made a CURVE client with them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple, Union

import zmq

from ._errors import Error

__all__ = ["Security", "SecurityError", "read_zpl", "read_cert", "check_security"]

#: The Z85 alphabet (ZeroMQ RFC 32).
Z85_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      ".-:+=^!/*?&<>()[]{}@%$#")
#: What czmq reports as the secret key of a certificate that has none.
_NO_KEY = "0" * 40

KeyOrPath = Union[str, bytes, "os.PathLike[str]"]
PathArg = Union[str, "os.PathLike[str]"]


class SecurityError(Error, ValueError):
    """Unusable CurveZMQ credentials (code ``"SECURITY"``): a key that is
    not 40 Z85 characters, a certificate file that cannot be read or parsed,
    a certificate without its secret key, a key pair that does not match,
    or a libzmq built without CURVE. Raised when a :class:`Security` is
    made, never later. Also a :class:`ValueError`."""

    code = "SECURITY"

    def __init__(self, message: str) -> None:
        super().__init__("SECURITY", message)


# ---------------------------------------------------------------------------
# ZPL (ZeroMQ RFC 4), as far as zcert files need it


def _zpl_value(text: str, lineno: int) -> str:
    """The value after ``=``: quoted (``"..."`` or ``'...'``) or bare; a
    ``#`` comment may follow."""
    text = text.strip()
    if not text:
        return ""
    if text[0] in "\"'":
        end = text.find(text[0], 1)
        if end < 0:
            raise ValueError(f"line {lineno}: unterminated quoted value")
        rest = text[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise ValueError(f"line {lineno}: unexpected text after the value: {rest!r}")
        return text[1:end]
    # As czmq reads it: a bare value runs up to a '#' comment.
    return text.split("#", 1)[0].strip()


def read_zpl(text: str) -> Dict[str, str]:
    """Parse ZPL text (what zcert writes: names at indentation levels of
    four spaces, ``name = "value"`` lines, ``#`` comment lines) into a flat
    ``{"section/name": value}`` dict (e.g. ``"curve/public-key"``).

    Raises :class:`ValueError` (with the line number) on text that is not
    ZPL: tabs or odd indentation, a line nested too deep, a bad name, an
    unterminated quote.
    """
    out: Dict[str, str] = {}
    path: List[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        if stripped[0] == "\t" or "\t" in line[: len(line) - len(stripped)]:
            raise ValueError(f"line {lineno}: tabs are not allowed in indentation")
        indent = len(line) - len(stripped)
        if indent % 4:
            raise ValueError(f"line {lineno}: indentation must be a multiple of 4 spaces")
        level = indent // 4
        if level > len(path):
            raise ValueError(f"line {lineno}: indented deeper than its parent")
        name, sep, rest = stripped.partition("=")
        name = name.strip()
        if not sep:
            # A bare name, possibly followed by a comment.
            name = name.split("#", 1)[0].strip()
        if not name or any(c.isspace() or c in "\"'=" for c in name):
            raise ValueError(f"line {lineno}: bad name {name!r}")
        del path[level:]
        path.append(name)
        key = "/".join(path)
        if sep:
            out[key] = _zpl_value(rest, lineno)
        else:
            out.setdefault(key, "")
    return out


def _check_key(key: Any, what: str) -> str:
    """A Z85 key as str (bytes accepted), or :class:`SecurityError`."""
    if isinstance(key, (bytes, bytearray)):
        try:
            key = bytes(key).decode("ascii")
        except UnicodeDecodeError:
            raise SecurityError(f"{what} is not a Z85 key (non-ASCII bytes)") from None
    if not isinstance(key, str):
        raise SecurityError(f"{what} must be a str or bytes Z85 key, not {type(key).__name__}")
    if len(key) != 40:
        raise SecurityError(f"{what} must be 40 Z85 characters, not {len(key)}")
    bad = sorted(set(key) - Z85_CHARS)
    if bad:
        raise SecurityError(f"{what} has characters outside Z85: {''.join(bad)!r}")
    return key


def read_cert(path: PathArg) -> Tuple[str, Optional[str]]:
    """Read a zcert file; return ``(public_key, secret_key)``, the secret
    being ``None`` for a public certificate (``NAME.cert``).

    Raises :class:`SecurityError` when the file cannot be read or parsed,
    or its keys are not 40 Z85 characters.
    """
    where = os.fspath(path)
    try:
        with open(where, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityError(f"cannot read the certificate {where!r}: {exc}") from exc
    try:
        zpl = read_zpl(text)
    except ValueError as exc:
        raise SecurityError(f"{where!r} is not a certificate (ZPL): {exc}") from None
    public = zpl.get("curve/public-key")
    if public is None:
        raise SecurityError(f"{where!r} is not a certificate: no curve/public-key")
    public = _check_key(public, f"the public key in {where!r}")
    secret: Optional[str] = zpl.get("curve/secret-key")
    if secret is not None and secret != _NO_KEY:
        secret = _check_key(secret, f"the secret key in {where!r}")
    else:
        secret = None
    return public, secret


def _public_of(secret: str) -> Optional[str]:
    """The public key of a secret key, or ``None`` if libzmq cannot tell."""
    try:
        return zmq.curve_public(secret.encode("ascii")).decode("ascii")
    except Exception:  # noqa: BLE001 - old libzmq/pyzmq: no derivation
        return None


class Security:
    """CurveZMQ credentials of a client: the server's public key and this
    client's key pair. Give it as ``security=`` to :class:`conveyor.Client`,
    :class:`conveyor.Registration`, :class:`conveyor.GroupMember`,
    :class:`conveyor.Watch`, :meth:`conveyor.LoadBalancer.watch`,
    :class:`conveyor.aio.AsyncClient` and :class:`conveyor.aio.AsyncWatch`:
    each socket they open (requests and events) is then a CURVE client.

    Args:
        server_key: the server's public key, as 40 Z85 characters (str or
            bytes), or the path of the server's public certificate file
            (``server.cert``; a 40-character string naming an existing file
            is taken as a path, as the C library does).
        cert: the path of this client's certificate *with its secret key*
            (``NAME.cert_secret``, written by ``conveyorctl keygen NAME``).
        public_key, secret_key: this client's key pair as Z85 (e.g. from
            ``zmq.curve_keypair()``), instead of ``cert``. ``public_key``
            may be left out when libzmq can derive it from ``secret_key``.

    Everything is read and checked here: a file that cannot be read, a key
    that is not 40 Z85 characters, a certificate without a secret key (the
    public ``NAME.cert`` given as ``cert``), a public key that does not
    belong to the secret key, or a libzmq without CURVE raise
    :class:`SecurityError` (a :class:`conveyor.Error` and a
    :class:`ValueError`). The object is immutable and may be shared.

    A server that does not know the client's key, a wrong server key, or a
    server without CURVE all look the same from here: no reply (calls raise
    :class:`conveyor.Timeout`) and no events.
    """

    __slots__ = ("_server_key", "_public_key", "_secret_key", "_cert_path")

    def __init__(self, server_key: KeyOrPath, cert: Optional[PathArg] = None, *,
                 public_key: Union[str, bytes, None] = None,
                 secret_key: Union[str, bytes, None] = None) -> None:
        if not zmq.has("curve"):
            raise SecurityError("this libzmq has no CURVE support")
        self._server_key = self._resolve_server_key(server_key)
        self._cert_path: Optional[str] = None
        if cert is not None:
            if public_key is not None or secret_key is not None:
                raise SecurityError("give cert= or public_key=/secret_key=, not both")
            self._cert_path = os.fspath(cert)
            public, secret = read_cert(cert)
            if secret is None:
                hint = ""
                if os.path.exists(self._cert_path + "_secret"):
                    hint = f" ({self._cert_path}_secret is)"
                raise SecurityError(
                    f"{self._cert_path!r} has no secret key: give the client's "
                    f"NAME.cert_secret file{hint}, not its public NAME.cert")
        else:
            if secret_key is None:
                raise SecurityError("no client credentials: give cert= (the path of "
                                    "NAME.cert_secret) or secret_key=")
            secret = _check_key(secret_key, "secret_key")
            public = (_check_key(public_key, "public_key") if public_key is not None
                      else _public_of(secret))
            if public is None:
                raise SecurityError("public_key is needed (this libzmq cannot derive it)")
        derived = _public_of(secret)
        if derived is not None and derived != public:
            where = f" in {self._cert_path!r}" if self._cert_path else ""
            raise SecurityError(f"the public and secret keys{where} are not a key pair")
        self._public_key = public
        self._secret_key = secret

    @staticmethod
    def _resolve_server_key(server_key: KeyOrPath) -> str:
        if isinstance(server_key, (bytes, bytearray)):
            return _check_key(server_key, "server_key")
        if isinstance(server_key, str):
            if len(server_key) == 40 and not os.path.exists(server_key):
                return _check_key(server_key, "server_key")
            if not os.path.exists(server_key):
                raise SecurityError(f"server_key {server_key!r} is neither 40 Z85 characters "
                                    f"nor an existing certificate file")
        elif not isinstance(server_key, os.PathLike):
            raise SecurityError(f"server_key must be a Z85 key or a path, "
                                f"not {type(server_key).__name__}")
        return read_cert(server_key)[0]

    @classmethod
    def from_files(cls, server_cert: PathArg, client_cert: PathArg) -> "Security":
        """Credentials from two zcert files: the server's public certificate
        (``server.cert``; its ``public-key`` is used) and this client's
        secret certificate (``NAME.cert_secret``). Both must be files: a
        string is never taken as a key here."""
        path = os.fspath(server_cert)
        if not os.path.isfile(path):
            raise SecurityError(f"cannot read the server's certificate {path!r}: no such file")
        return cls(read_cert(path)[0], client_cert)

    # -- the keys ------------------------------------------------------------

    @property
    def server_key(self) -> str:
        """The server's public key (Z85)."""
        return self._server_key

    @property
    def public_key(self) -> str:
        """This client's public key (Z85): the one the server must list."""
        return self._public_key

    @property
    def secret_key(self) -> str:
        """This client's secret key (Z85). Not shown by ``repr``."""
        return self._secret_key

    @property
    def cert_path(self) -> Optional[str]:
        """The client certificate file it was read from, if any."""
        return self._cert_path

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client of the server (before it connects)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self._server_key.encode("ascii"))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self._public_key.encode("ascii"))
        sock.setsockopt(zmq.CURVE_SECRETKEY, self._secret_key.encode("ascii"))

    def _id(self) -> Tuple[str, str, str]:
        return (self._server_key, self._public_key, self._secret_key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Security) and self._id() == other._id()

    def __hash__(self) -> int:
        return hash(self._id())

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_secret_key"):
            raise AttributeError("Security objects are immutable")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Security(server_key={self._server_key!r}, public_key={self._public_key!r})"


def check_security(security: Optional[Security]) -> Optional[Security]:
    """``security`` itself, or :class:`TypeError` if it is not a
    :class:`Security` (or ``None``)."""
    if security is not None and not isinstance(security, Security):
        raise TypeError(f"security must be a conveyor.Security, not {type(security).__name__}")
    return security


def apply_security(sock: zmq.Socket, security: Optional[Security]) -> None:
    """Apply ``security`` (if any) to a socket about to connect."""
    if security is not None:
        security.apply(sock)
