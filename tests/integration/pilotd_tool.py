#!/usr/bin/env python3
"""Helpers for the pilotd integration tests (no third-party modules).

  capture IFACE SECONDS OUT      AF_PACKET capture of every frame on IFACE (any = all) into OUT
                                 (records: u32 BE length, frame), stops after SECONDS
                                 or on SIGTERM
  grep OUT TEXT                  exit 0 if TEXT occurs in any captured frame
  count OUT MAGIC                print how many tunnel frames (direct or relayed) start
                                 with MAGIC (e.g. PILS)
  junk HOST PORT COUNT SEED      random and malformed datagrams at a tunnel port
  forge HOST PORT NODE COUNT     PILS frames naming NODE with random ciphertext, plus
                                 truncated PILS/PILA/PILK frames
  replay OUT HOST PORT           resend every captured PILS frame sent to PORT (direct or
                                 inside a RelayDeliver) straight to HOST:PORT
  ctl SOCKET                     malformed control-socket frames; exit 0 if the daemon
                                 still answers "info" afterwards
"""
import json
import os
import random
import signal
import socket
import struct
import sys
import time

import ctlsock

MAGICS = [b"PILT", b"PILS", b"PILK", b"PILA", b"PILP"]


def capture(iface, seconds, out):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    if iface != "any":  # "any": every interface of the namespace (the bridge ports)
        s.bind((iface, 0))
    s.settimeout(0.2)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    end = time.time() + float(seconds)
    with open(out, "wb") as f:
        open(out + ".ready", "w").close()
        while not stop[0] and time.time() < end:
            try:
                frame = s.recv(65535)
            except socket.timeout:
                continue
            f.write(struct.pack(">I", len(frame)) + frame)
            f.flush()


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i + 4 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        yield data[i + 4:i + 4 + n]
        i += 4 + n


def udp_payloads(path):
    """(dst_port, payload) of IPv4 UDP frames (Ethernet II)."""
    for fr in frames(path):
        if len(fr) < 42 or fr[12:14] != b"\x08\x00" or fr[23] != 17:
            continue
        ihl = (fr[14] & 0x0F) * 4
        u = 14 + ihl
        (dport,) = struct.unpack(">H", fr[u + 2:u + 4])
        yield dport, fr[u + 8:]


def tunnel_frame(payload):
    """The tunnel frame inside a beacon Relay (05) / RelayDeliver (06), or the payload."""
    if payload[:1] == b"\x05":
        return payload[9:]
    if payload[:1] == b"\x06":
        return payload[5:]
    return payload


def junk(host, port, count, seed):
    rnd = random.Random(int(seed))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(count)):
        kind = i % 4
        n = rnd.randrange(0, 1400)
        body = bytes(rnd.getrandbits(8) for _ in range(n))
        if kind == 1:
            body = rnd.choice(MAGICS) + body
        elif kind == 2:
            body = bytes([rnd.randrange(0, 16)]) + body[:rnd.randrange(0, 40)]
        elif kind == 3:
            body = rnd.choice(MAGICS) + body[:rnd.randrange(0, 12)]
        s.sendto(body, (host, int(port)))
        if i % 50 == 0:
            time.sleep(0.005)


def forge(host, port, node, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    node = int(node)
    for i in range(int(count)):
        nonce = os.urandom(12)
        ct = os.urandom(34 + 16 + 16)
        s.sendto(b"PILS" + struct.pack(">I", node) + nonce + ct, (host, int(port)))
    for cut in (3, 7, 19, 35):  # truncated PILS
        s.sendto((b"PILS" + struct.pack(">I", node) + os.urandom(64))[:cut], (host, int(port)))
    for magic, full in ((b"PILA", 136), (b"PILK", 40)):
        s.sendto((magic + struct.pack(">I", node) + os.urandom(full))[:full - 5], (host, int(port)))


def replay(path, host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n = 0
    for dport, payload in udp_payloads(path):
        frame = tunnel_frame(payload)
        if dport == int(port) and frame[:4] == b"PILS":
            s.sendto(frame, (host, int(port)))
            n += 1
    print(n)


def ctl_raw(path, data, read=True):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(3)
    c.connect(path)
    try:
        c.sendall(data)
        if read:
            c.recv(65536)
    except OSError:
        pass
    c.close()


def ctl(path):
    bad = [
        struct.pack(">I", 0xFFFFFFFF),                     # declared length over 1 MiB
        struct.pack(">I", 5) + b"{nope",                   # invalid JSON
        struct.pack(">I", 2) + b"[]",                      # not an object
        struct.pack(">I", 9) + b'{"cmd":5}',               # cmd not a string
        struct.pack(">I", 16) + b'{"cmd":"nope!!"}',       # unknown command
        struct.pack(">I", 0),                              # empty frame
        struct.pack(">I", 100) + b'{"cmd":"info"',         # truncated, then closed
    ]
    for b in bad:
        ctl_raw(path, b, read=not b.startswith(struct.pack(">I", 100)))
    for args in ({"node_id": "x"}, {"node_id": -1}, {"node_id": 2**40}, {}, {"node_id": [1]}):
        for cmd in ("approve", "handshake", "ping", "lookup", "disconnect", "connect"):
            r = ctlsock.request(path, {"cmd": cmd, "args": args}, 5)
            if r.get("status") != "error":
                print("accepted bad args", cmd, args, r)
                return 1
    # Many clients at once: some are refused, none break the daemon.
    conns = []
    for _ in range(100):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            c.connect(path)
            conns.append(c)
        except OSError:
            break
    for c in conns:
        c.close()
    # The daemon notices the closes on its next loop turns; then it answers again.
    for _ in range(50):
        r = ctlsock.request(path, {"cmd": "info"}, 5)
        if r.get("status") == "ok":
            return 0
        time.sleep(0.1)
    print("no info after the flood:", r)
    return 1


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "capture":
        capture(*args)
    elif cmd == "grep":
        text = args[1].encode()
        sys.exit(0 if any(text in fr for fr in frames(args[0])) else 1)
    elif cmd == "count":
        print(sum(1 for _, p in udp_payloads(args[0]) if tunnel_frame(p)[:4] == args[1].encode()))
    elif cmd == "junk":
        junk(*args)
    elif cmd == "forge":
        forge(*args)
    elif cmd == "replay":
        replay(*args)
    elif cmd == "ctl":
        sys.exit(ctl(*args))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
