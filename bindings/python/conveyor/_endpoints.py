"""Endpoint handling shared by the blocking and the asyncio clients (no I/O).

A client knows one or several request endpoints (the nodes of a cluster).
:func:`call_plan` decides, for one call, where each try goes and what to do
with its outcome: follow ``NOT_LEADER`` redirects, move on to the next node
after a silent try or while a leader is being elected, back off a little,
and give up at the call's deadline. The clients drive it (they send, wait
and sleep), so both flavours behave the same.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Generator, List, Optional, Sequence, Tuple, Union

from ._errors import Error, NotLeader, Timeout, error_from_reply
from ._wire import _EP_RE, _WILDCARDS, log

__all__ = ["EndpointsArg", "parse_endpoints", "Endpoints", "call_plan", "DISCONNECT_EVENTS",
           "wildcard_endpoint", "is_transient"]

#: What ``endpoint=`` accepts: one endpoint, a comma-separated string of
#: them, or a sequence of them.
EndpointsArg = Union[str, Sequence[str]]

#: Backoff between tries that found no leader: from the first to the last.
BACKOFF_MIN = 0.02
BACKOFF_MAX = 0.2
#: A node that left a try unanswered is not trusted as a redirect target
#: for this long (followers keep naming a dead leader until they elect).
SUSPECT_S = 1.0

try:   # socket monitor events meaning "this try will not be answered"
    import zmq as _zmq
    DISCONNECT_EVENTS = _zmq.EVENT_DISCONNECTED | _zmq.EVENT_CONNECT_RETRIED
except Exception:  # noqa: BLE001 - pragma: no cover
    DISCONNECT_EVENTS = 0

# A try's outcome, sent into the plan: ("reply", reply_map) or
# ("noreply", (sent: bool, why: str)).
Outcome = Tuple[str, Any]
# An action of the plan: ("try", endpoint, until_monotonic) or ("sleep", seconds).
Action = Tuple[Any, ...]
Plan = Generator[Action, Outcome, Dict[str, Any]]


def parse_endpoints(endpoint: EndpointsArg) -> List[str]:
    """``"a"``, ``"a,b,c"`` or ``["a", "b"]`` -> ``["a", "b", ...]``
    (whitespace stripped, duplicates dropped, order kept)."""
    items: List[str] = []
    if isinstance(endpoint, (str, bytes)):
        raw = [endpoint.decode() if isinstance(endpoint, bytes) else endpoint]
    else:
        try:
            raw = list(endpoint)
        except TypeError:
            raise TypeError(f"endpoint must be a string or a list of strings, "
                            f"not {type(endpoint).__name__}") from None
    for part in raw:
        if not isinstance(part, str):
            raise TypeError(f"endpoint must be a string or a list of strings, not {part!r}")
        for ep in part.split(","):
            ep = ep.strip()
            if ep and ep not in items:
                items.append(ep)
    if not items:
        raise ValueError(f"no endpoint in {endpoint!r}")
    return items


def wildcard_endpoint(endpoint: str) -> bool:
    """Does the endpoint have a wildcard host (``tcp://*:7400``, ``tcp://0.0.0.0:7400``)?"""
    m = _EP_RE.match(endpoint)
    return bool(m) and m.group("host") in _WILDCARDS


def is_transient(exc: BaseException) -> bool:
    """A failure a failover explains: no reply, or no leader reachable."""
    return isinstance(exc, (Timeout, NotLeader))


class Endpoints:
    """The nodes a client knows and the one its next call goes to.
    Not thread-safe: the clients use it under their lock."""

    def __init__(self, endpoints: EndpointsArg) -> None:
        self.endpoints: List[str] = parse_endpoints(endpoint=endpoints)
        self.index = 0
        self._suspect: Dict[str, float] = {}
        #: How many times calls moved to another node.
        self.switches = 0

    @property
    def current(self) -> str:
        return self.endpoints[self.index]

    @property
    def multi(self) -> bool:
        return len(self.endpoints) > 1

    def prefer(self, endpoint: str) -> None:
        """Make ``endpoint`` the current node (learning it if unknown)."""
        if endpoint not in self.endpoints:
            log.debug("learning endpoint %s", endpoint)
            self.endpoints.append(endpoint)
        i = self.endpoints.index(endpoint)
        if i != self.index:
            self.index = i
            self.switches += 1

    def suspect(self, endpoint: str) -> None:
        self._suspect[endpoint] = time.monotonic() + SUSPECT_S

    def trusted(self, endpoint: str) -> bool:
        until = self._suspect.get(endpoint)
        if until is None:
            return True
        if time.monotonic() >= until:
            del self._suspect[endpoint]
            return True
        return False

    def advance(self) -> None:
        """Move to the next node, skipping suspect ones while others remain."""
        n = len(self.endpoints)
        if n == 1:
            return
        i = (self.index + 1) % n
        for k in range(1, n):
            j = (self.index + k) % n
            if self.trusted(self.endpoints[j]):
                i = j
                break
        self.index = i
        self.switches += 1


def call_plan(eps: Endpoints, op: str, wait: float, try_timeout: float,
              hint: str = "") -> Plan:
    """One call: yields tries and sleeps, receives each try's outcome,
    returns the successful reply map or raises.

    * A single known node gets the whole ``wait`` for one try; a silent one
      raises :class:`Timeout` (the behaviour of a client of one daemon).
    * With several, each try gets at most ``try_timeout``; a silent try (or
      a link that drops) moves to the next node.
    * ``NOT_LEADER`` naming a leader: the next try goes there (learning it
      if unknown); naming none (election under way), itself, a wildcard
      address or a node that just left a try unanswered: the next node,
      after a short backoff.
    * At the deadline: :class:`NotLeader` if the last try was redirected
      (redirects kept failing), else :class:`Timeout`.

    Every error raised has ``retried`` set when an earlier try of the call
    went unanswered (so the operation may have been applied by it).
    """
    deadline = time.monotonic() + wait
    backoff = BACKOFF_MIN
    redirects = 0
    unanswered = False
    last_error: Optional[Error] = None
    electing = False
    while True:
        ep = eps.current
        now = time.monotonic()
        until = min(deadline, now + try_timeout) if eps.multi else deadline
        kind, value = yield ("try", ep, until)
        pause = True
        if kind == "reply":
            reply = value
            if reply.get("ok") is True:
                return reply
            err = error_from_reply(reply)
            err.retried = unanswered
            if not isinstance(err, NotLeader):
                raise err
            leader = err.leader
            if (isinstance(leader, str) and leader and leader != ep and not wildcard_endpoint(leader)
                    and eps.trusted(leader)):
                log.debug("%s: %s is not the leader; trying %s", op, ep, leader)
                eps.prefer(leader)
                last_error = err
                redirects += 1
                pause = redirects > 2   # A -> B -> A...: slow down
            else:
                log.debug("%s: %s is not the leader and names %s; trying another node",
                          op, ep, leader)
                last_error = None
                electing = True
                eps.advance()
        else:
            sent, why = value
            unanswered = unanswered or sent
            last_error = None
            if not eps.multi:
                err = Timeout("TIMEOUT", why)
                err.retried = False   # the one try: its own outcome is unknown
                raise err
            log.debug("%s: %s; trying another node", op, why)
            eps.suspect(ep)
            eps.advance()
        now = time.monotonic()
        if now >= deadline:
            break
        if pause:
            yield ("sleep", min(backoff, deadline - now))
            backoff = min(backoff * 2, BACKOFF_MAX)
            if time.monotonic() >= deadline:
                break
    if last_error is not None:
        raise last_error
    nodes = ", ".join(eps.endpoints)
    if electing and not unanswered:
        msg = f"{op}: no leader among {nodes} within {wait:g} s (an election is under way?)"
    else:
        msg = f"no reply to {op} from any of {nodes} within {wait:g} s"
    err = Timeout("TIMEOUT", msg + hint)
    err.retried = unanswered
    raise err


class NodeTracker:
    """The log of a background component (registration, member) about the
    node it talks to: one line per failover.

    Failures a failover explains (:func:`is_transient`) of a client of
    several nodes are logged at debug level, unless they last beyond
    ``patience`` seconds (then one warning); other failures are warnings.
    The first success on another node logs one info line, as does the first
    success after a warning.
    """

    def __init__(self, what: str, client: Any) -> None:
        self.what = what
        self.client = client
        self.node: str = client.endpoint
        self.since: Optional[float] = None
        self.quiet = 0
        self.warned = False

    def failed(self, exc: BaseException, action: str, patience: float) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if is_transient(exc) and self.client._eps.multi:
            if not self.warned and now - self.since >= patience:
                self.warned = True
                log.warning("%s: %s failing for %.1f s (no leader reachable): %s",
                            self.what, action, now - self.since, exc)
            else:
                self.quiet += 1
                log.debug("%s: %s failed (failover?): %s", self.what, action, exc)
        else:
            self.warned = True
            log.warning("%s: %s failed: %s", self.what, action, exc)

    def succeeded(self) -> bool:
        """After a successful call; true if the node changed."""
        node = self.client.endpoint
        changed = node != self.node
        if changed or self.since is not None:
            took = time.monotonic() - self.since if self.since is not None else 0.0
            if changed:
                log.info("%s: now served by %s (was %s)%s", self.what, node, self.node,
                         f" after {took:.1f} s of failed calls" if took else "")
            elif self.warned:
                log.info("%s: served again by %s after %.1f s", self.what, node, took)
        self.node = node
        self.since = None
        self.quiet = 0
        self.warned = False
        return changed
