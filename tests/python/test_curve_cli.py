"""CurveZMQ from the command line: conveyorctl keygen, a daemon started
with --curve-secret/--curve-clients, an allowed conveyorctl, and strangers
(plaintext, unknown key) that get nothing. Every wait is bounded."""

import os
import subprocess

from conftest import CONVEYORD

CTL = os.environ.get("CONVEYORCTL", os.path.join(os.path.dirname(CONVEYORD), "conveyorctl"))


def ctl(*args, timeout=20):
    return subprocess.run([CTL, *args], capture_output=True, text=True, timeout=timeout)


def test_keygen_secured_daemon_and_strangers(conveyord, tmp_path):
    clients = tmp_path / "clients"
    clients.mkdir()
    for name in ("server", "alice", "mallory"):
        out = ctl("keygen", name, "--dir", str(tmp_path))
        assert out.returncode == 0, out.stderr
        assert f"{name}.cert_secret" in out.stdout
    # keygen never overwrites a key
    again = ctl("keygen", "alice", "--dir", str(tmp_path))
    assert again.returncode == 1 and "not overwriting" in again.stderr
    (clients / "alice.cert").write_bytes((tmp_path / "alice.cert").read_bytes())

    daemon = conveyord("--curve-secret", str(tmp_path / "server.cert_secret"),
                       "--curve-clients", str(clients))
    ep = ["-e", daemon.requests, "-t", "700"]
    alice = ["--server-key", str(tmp_path / "server.cert"),
             "--cert", str(tmp_path / "alice.cert_secret")]
    ok = ctl(*ep, *alice, "register", "--id", "s1", "--name", "orders",
             "--type", "source", "--endpoint", "tcp://x:1")
    assert ok.returncode == 0, ok.stderr

    mallory = ["--server-key", str(tmp_path / "server.cert"),
               "--cert", str(tmp_path / "mallory.cert_secret")]
    for who in ([], mallory):
        denied = ctl(*ep, *who, "deregister", "s1")
        assert denied.returncode == 3, (who, denied.stdout, denied.stderr)
    # Nothing the strangers sent changed anything.
    seen = ctl(*ep, *alice, "--json", "service", "s1")
    assert seen.returncode == 0 and '"service_id": "s1"' in seen.stdout
    # Half the credentials is a usage error, not a hang.
    half = ctl(*ep, "--cert", str(tmp_path / "alice.cert_secret"), "status")
    assert half.returncode == 2 and "go together" in half.stderr


def test_daemon_refuses_half_or_bad_curve_options(conveyord, tmp_path):
    out = ctl("keygen", "server", "--dir", str(tmp_path))
    assert out.returncode == 0
    for args in (["--curve-secret", str(tmp_path / "server.cert_secret")],
                 ["--curve-secret", str(tmp_path / "server.cert"),
                  "--curve-clients", str(tmp_path)],
                 ["--curve-secret", str(tmp_path / "nope"), "--curve-clients", str(tmp_path)]):
        proc = subprocess.run([CONVEYORD, "--listen", "tcp://127.0.0.1:*",
                               "--publish", "tcp://127.0.0.1:*", *args],
                              capture_output=True, text=True, timeout=20)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
