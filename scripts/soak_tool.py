#!/usr/bin/env python3
"""Helpers for scripts/soak (no third-party modules). Every command prints one
result line "ok ...", "fail REASON" or "corrupt DETAIL" and exits 0.

  stream SRC_SOCK DST_SOCK DST_NODE PORT BYTES SECS
        test-sink on the receiver, test-source on the sender; the receiver's
        SHA-256 and byte count are compared with the pattern's
  dgram SRC_SOCK DST_SOCK DST_NODE PORT COUNT TAG SECS
        COUNT datagrams "TAG-k"; the receiver listens for them; prints
        "ok sent received" (loss = sent - received; a payload not sent or
        received twice is corruption)
  sink-server PORT         TCP: read to EOF, answer "sha256 bytes\\n" (an
                           unmodified kind of server, reached through the TUN)
  upload HOST PORT BYTES SEED SECS   send seeded random bytes, half-close, compare
  fetch URL SHA SECS        curl URL, compare the body's SHA-256
"""
import hashlib
import os
import random
import socket
import socketserver
import subprocess
import sys
import threading

# the control-socket client and the test pattern, shared with the tests' tools
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from ctlsock import call, pattern_sha  # noqa: E402


def background(fn):
    box = {}

    def run():
        try:
            box["r"] = fn()
        except Exception as e:  # noqa: BLE001 - reported as a failure
            box["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def data_of(r):
    return r.get("data", r) if isinstance(r, dict) else {}


def stream(src, dst, node, port, nbytes, secs):
    nbytes, port, secs = int(nbytes), int(port), float(secs)
    tms = int(secs * 1000)
    t, box = background(lambda: call(dst, "test-sink", {"port": port, "timeout_ms": tms}, secs + 5))
    import time
    time.sleep(0.3)
    try:
        s = call(src, "test-source", {"target": node, "port": port, "bytes": nbytes, "timeout_ms": tms},
                 secs + 5)
    except Exception as e:  # noqa: BLE001
        s = {"status": "error", "message": str(e)}
    t.join(secs + 10)
    if "e" in box or "r" not in box:
        return "fail sink %s" % box.get("e", "no answer")
    k = box["r"]
    if k.get("status") != "ok":
        return "fail sink %s / source %s" % (k.get("message"), s.get("message"))
    got = data_of(k)
    want = pattern_sha(nbytes)
    if got.get("bytes") == nbytes and got.get("sha256") == want:
        return "ok %d" % nbytes
    if got.get("bytes", 0) >= nbytes or s.get("status") == "ok" and got.get("bytes") == nbytes:
        return "corrupt bytes=%s sha=%s want=%s" % (got.get("bytes"), got.get("sha256"), want)
    return "fail short bytes=%s of %d" % (got.get("bytes"), nbytes)


def dgram(src, dst, node, port, count, tag, secs):
    count, port, secs = int(count), int(port), float(secs)
    t, box = background(lambda: call(dst, "listen", {"port": port, "count": count,
                                                     "timeout_ms": int(secs * 1000)}, secs + 5))
    import time
    time.sleep(0.3)
    sent = 0
    for k in range(count):
        try:
            r = call(src, "dgram-send", {"target": node, "port": port, "data": "%s-%d" % (tag, k)}, 5)
            if r.get("status") == "ok":
                sent += 1
        except Exception:  # noqa: BLE001 - counted as not sent
            pass
        time.sleep(0.02)
    t.join(secs + 10)
    if "r" not in box:
        return "fail listen %s" % box.get("e", "no answer")
    # the final reply lists them; else they came as stream items
    msgs = data_of(box["r"]).get("messages") or [
        it for it in box["r"].get("stream_items", []) if isinstance(it, dict) and "data" in it]
    seen = set()
    want = {"%s-%d" % (tag, k) for k in range(count)}
    for m in msgs:
        d = m.get("data") if isinstance(m, dict) else None
        if d not in want or d in seen:
            return "corrupt unexpected datagram %r" % (d,)
        seen.add(d)
    return "ok %d %d" % (sent, len(seen))


class Sink(socketserver.StreamRequestHandler):
    def handle(self):
        h = hashlib.sha256()
        n = 0
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            h.update(b)
            n += len(b)
        self.request.sendall(("%s %d\n" % (h.hexdigest(), n)).encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def sink_server(port):
    Server(("0.0.0.0", int(port)), Sink).serve_forever()


def upload(host, port, nbytes, seed, secs):
    nbytes = int(nbytes)
    rnd = random.Random(int(seed))
    data = rnd.randbytes(nbytes)
    want = hashlib.sha256(data).hexdigest()
    try:
        c = socket.create_connection((host, int(port)), timeout=float(secs))
        c.settimeout(float(secs))
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n"):
            b = c.recv(256)
            if not b:
                break
            reply += b
        c.close()
    except Exception as e:  # noqa: BLE001
        return "fail %s" % e
    parts = reply.decode(errors="replace").split()
    if len(parts) != 2:
        return "fail reply %r" % reply[:80]
    if parts[0] == want and int(parts[1]) == nbytes:
        return "ok %d" % nbytes
    return "corrupt got=%s/%s want=%s/%d" % (parts[0], parts[1], want, nbytes)


def fetch(url, sha, secs):
    try:
        p = subprocess.run(["curl", "-sS", "-m", str(int(float(secs))), "-o", "-", url],
                           capture_output=True, timeout=float(secs) + 5)
    except Exception as e:  # noqa: BLE001
        return "fail %s" % e
    if p.returncode != 0:
        return "fail curl rc=%d %s" % (p.returncode, p.stderr.decode(errors="replace").strip()[:100])
    got = hashlib.sha256(p.stdout).hexdigest()
    if got == sha:
        return "ok %d" % len(p.stdout)
    return "corrupt got=%s bytes=%d" % (got, len(p.stdout))


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "sink-server":
        sink_server(a[0])
        return
    fn = {"stream": stream, "dgram": dgram, "upload": upload, "fetch": fetch}[cmd]
    try:
        print(fn(*a))
    except Exception as e:  # noqa: BLE001
        print("fail %s" % e)


if __name__ == "__main__":
    main()
