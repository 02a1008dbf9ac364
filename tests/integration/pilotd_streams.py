#!/usr/bin/env python3
"""Helpers for pilotd_streams.sh.

  call SOCK CMD ARGS_JSON [SECS]  one control request; prints the final reply as
                                  JSON with the streamed items under "stream_items"
  pattern-sha BYTES               SHA-256 of the test pattern (byte i = i % 251)
"""
import hashlib
import json
import socket
import struct
import sys


def recv_frame(c):
    hdr = c.recv(4, socket.MSG_WAITALL)
    if len(hdr) < 4:
        raise EOFError("control socket closed")
    (n,) = struct.unpack(">I", hdr)
    body = b""
    while len(body) < n:
        chunk = c.recv(n - len(body))
        if not chunk:
            raise EOFError("control socket closed")
        body += chunk
    return json.loads(body)


def call(path, cmd, args, secs=60.0):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(float(secs))
    c.connect(path)
    body = json.dumps({"cmd": cmd, "args": json.loads(args)}).encode()
    c.sendall(struct.pack(">I", len(body)) + body)
    items = []
    while True:
        r = recv_frame(c)
        if r.get("status") == "stream":
            items.append(r.get("data"))
            continue
        break
    c.close()
    r["stream_items"] = items
    return r


def pattern_sha(n):
    n = int(n)
    block = bytes(i % 251 for i in range(251)) * 4096  # a multiple of 251
    h = hashlib.sha256()
    while n > 0:
        k = min(n, len(block))
        h.update(block[:k])
        n -= k
    return h.hexdigest()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "call":
        try:
            print(json.dumps(call(*args)))
        except (OSError, EOFError) as e:
            print(json.dumps({"status": "error", "code": "client", "message": str(e)}))
            sys.exit(1)
    elif cmd == "pattern-sha":
        print(pattern_sha(args[0]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
