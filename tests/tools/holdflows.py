#!/usr/bin/python3
"""Hold many idle TCP connections (scripts/bench: pilotd RSS with 10,000 idle flows).

  holdflows.py serve IP PORT SECONDS
      listen on IP:PORT, accept and hold every connection; exit after SECONDS.
  holdflows.py connect IP PORT N SECONDS READYFILE
      open N connections to IP:PORT (at most 256 connecting at once, each bounded
      by 10 s), write "<established> <failed> <seconds>" to READYFILE once every
      attempt has ended, then hold them idle until SECONDS have passed since the
      start or SIGTERM arrives. Exit 0 when all N were established.

Both raise RLIMIT_NOFILE to what they need, or to the hard limit when raising that
is not allowed (no CAP_SYS_RESOURCE).
Bounded in time and count; sends no payload.
"""
import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time

INFLIGHT = 256
CONNECT_TIMEOUT = 10.0


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        try:  # raising the hard limit needs CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


stop = False


def on_term(_sig, _frm):
    global stop
    stop = True


def serve(ip, port, secs):
    end = time.monotonic() + secs
    raise_nofile(65536)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, port))
    ls.listen(4096)
    ls.settimeout(0.5)
    held = []
    while not stop and time.monotonic() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                time.sleep(0.1)
                continue
            raise
        held.append(c)
    print("held %d" % len(held), flush=True)
    return 0


def connect(ip, port, n, secs, ready):
    t0 = time.monotonic()
    end = t0 + secs
    raise_nofile(n)
    sel = selectors.DefaultSelector()
    pending = {}  # sock -> deadline
    done, failed, started = [], 0, 0
    while (started < n or pending) and not stop and time.monotonic() < end:
        while started < n and len(pending) < INFLIGHT:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            started += 1
            rc = s.connect_ex((ip, port))
            if rc not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            pending[s] = time.monotonic() + CONNECT_TIMEOUT
            sel.register(s, selectors.EVENT_WRITE)
        for key, _ in sel.select(0.2):
            s = key.fileobj
            sel.unregister(s)
            del pending[s]
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                failed += 1
                s.close()
        now = time.monotonic()
        for s in [s for s, d in pending.items() if d < now]:
            sel.unregister(s)
            del pending[s]
            failed += 1
            s.close()
    tmp = ready + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d %.3f\n" % (len(done), failed, time.monotonic() - t0))
    os.rename(tmp, ready)
    while not stop and time.monotonic() < end:
        time.sleep(0.2)
    return 0 if len(done) == n else 1


def main(argv):
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if len(argv) == 5 and argv[1] == "serve":
        return serve(argv[2], int(argv[3]), float(argv[4]))
    if len(argv) == 7 and argv[1] == "connect":
        return connect(argv[2], int(argv[3]), int(argv[4]), float(argv[5]), argv[6])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
