"""What the demo pipeline's Python programs share (examples only).

The record stream and the wire are described in examples/pipeline.h (the C
side); these functions must stay equal to the ones there:

    payload(p, o)  = fmix32(p * 0x9E3779B1 + o * 0x85EBCA77)   (mod 2^32)
    transform(v)   = v * 3                                      (mod 2^32)

CurveZMQ: every program that talks to the coordinator takes --server-key
KEY|FILE and --cert FILE (add_security_options, security_from_args), as
examples/service.c, source.c and transform.c do, and gives the resulting
conveyor.Security to each Client, Registration, GroupMember and Watch it
makes. The pipeline's own sockets (source and sinks) stay plaintext.
"""

import json
import os
import sys
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import conveyor  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # from a checkout: use the binding next door
    sys.path.insert(0, os.path.join(_HERE, "..", "bindings", "python"))
    import conveyor  # noqa: F401

import msgpack
import zmq

__all__ = ["conveyor", "DEFAULT_ENDPOINT", "payload", "transform", "now_ms", "pack", "unpack",
           "Journal", "request", "dealer", "find_source", "write_json", "read_json",
           "read_jsonl", "add_security_options", "security_from_args", "curve_hint"]

MASK = 0xFFFFFFFF
DEFAULT_ENDPOINT = "tcp://127.0.0.1:7400"


def add_security_options(parser):
    """--server-key and --cert, with the help of examples/service.c's."""
    parser.add_argument("--server-key", metavar="KEY|FILE",
                        help="CurveZMQ: the coordinator's public key (40 Z85 characters) "
                             "or its NAME.cert file")
    parser.add_argument("--cert", metavar="FILE",
                        help="CurveZMQ: this program's NAME.cert_secret; both are needed for "
                             "a coordinator started with --curve-secret (only the "
                             "coordinator connection uses CURVE)")


def security_from_args(prog, args):
    """The conveyor.Security of --server-key and --cert, or None when
    neither was given. Half of them, or an unusable key or certificate:
    one line on stderr and exit status 2 (usage), as the C programs do."""
    if args.server_key is None and args.cert is None:
        return None
    if args.server_key is None or args.cert is None:
        print(f"{prog}: --server-key and --cert go together (see --help)", file=sys.stderr)
        sys.exit(2)
    try:
        return conveyor.Security(args.server_key, args.cert)
    except conveyor.SecurityError as exc:
        print(f"{prog}: unusable --server-key/--cert: {exc.message}", file=sys.stderr)
        sys.exit(2)


def curve_hint(security, exc):
    """What to add to a Timeout from the coordinator when CURVE is on."""
    if security is None or not isinstance(exc, conveyor.Timeout):
        return ""
    return (" (CurveZMQ: a coordinator whose key is not --server-key, or that does not "
            "list the public key of --cert, answers nothing)")


def fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    h ^= h >> 16
    return h


def payload(partition, offset):
    return fmix32((partition * 0x9E3779B1 + (offset & MASK) * 0x85EBCA77) & MASK)


def transform(value):
    return (value * 3) & MASK


def now_ms():
    return int(time.time() * 1000)


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Journal:
    """JSON lines, one per step, each written at once (survives SIGKILL)."""

    def __init__(self, path, worker_id):
        self.id = worker_id
        self._lock = threading.Lock()
        self._file = open(path, "a", buffering=1) if path else None

    def __call__(self, ev, **fields):
        if self._file is None:
            return
        line = json.dumps(dict(at=now_ms(), id=self.id, ev=ev, **fields))
        with self._lock:
            self._file.write(line + "\n")

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def request(sock, msg, key, ident, timeout):
    """Send msg (a dict) on a DEALER and wait at most timeout seconds for
    the reply whose key equals ident; None on timeout (late replies to
    earlier requests are dropped)."""
    sock.send(pack(msg))
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            if not sock.poll(max(int(left * 1000), 1)):
                continue
        except zmq.ZMQError:
            continue
        try:
            reply = unpack(sock.recv(zmq.NOBLOCK))
        except (zmq.Again, ValueError, msgpack.UnpackException):
            continue
        if isinstance(reply, dict) and reply.get(key) == ident:
            return reply


def dealer(endpoint):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def find_source(client, topic):
    """A source of the topic from the registry (a healthy one first), or None."""
    services = client.list_services(service_type="source", labels={"topic": topic})
    healthy = [s for s in services if s.health == "healthy"]
    chosen = healthy or list(services)
    return chosen[0] if chosen else None


def write_json(path, obj):
    """Write atomically (readers never see half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass   # a line cut by a SIGKILL
    except OSError:
        pass
    return out
