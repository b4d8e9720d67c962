"""Python binding of Conveyor: a client of the ``conveyord`` coordinator
(service registry, events and consumer groups) over ZeroMQ and MessagePack.

Main classes:

* :class:`Client` - one method per protocol operation;
* :class:`Registration` - a service registration kept alive in the background;
* :class:`GroupMember` - a consumer-group member following rebalances;
* :class:`Watch` - the events under a prefix, in order, with gap recovery;
* :class:`LoadBalancer` - round robin / smooth weighted round robin;
* :mod:`conveyor.aio` - ``AsyncClient`` and ``AsyncWatch`` for asyncio;
* :class:`Security` - CurveZMQ credentials, given to any of them as
  ``security=`` for a daemon started with ``--curve-secret``.

Every class takes one request endpoint, or a cluster's (a list, or a
comma-separated string): calls follow the leader, and survive a failover.

Errors are :class:`Error` subclasses, one per server error code;
:class:`Timeout` when no reply comes in time. Logs go to the ``"conveyor"``
logger.
"""

from ._balancer import LoadBalancer
from ._client import Client
from ._errors import (ERROR_CLASSES, BadRequest, Compacted, Conflict, Error,
                      IllegalGeneration, Internal, LimitExceeded, NotFound,
                      NotLeader, NotOwner, ProtocolError, Timeout,
                      UnknownMember, UnknownOp, UnsupportedVersion)
from ._member import GroupMember
from ._registration import Registration
from ._security import Security, SecurityError
from ._types import (Assignment, ClusterServer, ClusterStatus, Event,
                     EventsPage, Group, GroupHeartbeat, GroupList,
                     GroupSummary, Hello, JoinResult, Lease, Member, Service,
                     ServiceList, Topic, TopicPartition)
from ._watch import Watch
from ._wire import DEFAULT_ENDPOINT, DEFAULT_TIMEOUT

__version__ = "0.1.0"

__all__ = [
    "Client", "Registration", "GroupMember", "Watch", "LoadBalancer",
    "Security", "SecurityError",
    "Error", "Timeout", "ProtocolError", "BadRequest", "UnknownOp", "UnsupportedVersion",
    "NotFound", "Conflict", "UnknownMember", "IllegalGeneration", "NotOwner",
    "Compacted", "LimitExceeded", "NotLeader", "Internal", "ERROR_CLASSES",
    "Service", "ServiceList", "Hello", "Lease", "Topic", "Member", "Group",
    "GroupSummary", "GroupList", "JoinResult", "GroupHeartbeat", "Event",
    "EventsPage", "TopicPartition", "Assignment", "ClusterStatus", "ClusterServer",
    "DEFAULT_ENDPOINT", "DEFAULT_TIMEOUT", "__version__",
]
