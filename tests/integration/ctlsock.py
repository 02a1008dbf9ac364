"""pilotd's control socket for the Python test tools (pilotd_streams.py,
pilotd_tool.py, pilotd_compat.py, scripts/soak_tool.py): frames are a 4-byte
big-endian length and a JSON body; a long operation answers with "stream"
frames before its final reply.

  request(path, obj, secs)      one request, the first reply
  call(path, cmd, args, secs)   one request; the final reply, with the streamed
                                items under "stream_items"
  pattern_sha(n)                SHA-256 of the first n bytes of the test pattern
                                of test-source (byte i = i % 251)
"""
import hashlib
import json
import socket
import struct


def send_frame(c, obj):
    body = json.dumps(obj).encode()
    c.sendall(struct.pack(">I", len(body)) + body)


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


def connect(path, secs):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(float(secs))
    c.connect(path)
    return c


def request(path, obj, secs):
    c = connect(path, secs)
    send_frame(c, obj)
    reply = recv_frame(c)
    c.close()
    return reply


def call(path, cmd, args, secs):
    c = connect(path, secs)
    send_frame(c, {"cmd": cmd, "args": args})
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
    block = bytes(i % 251 for i in range(251)) * 4096  # a multiple of 251
    h = hashlib.sha256()
    while n > 0:
        k = min(n, len(block))
        h.update(block[:k])
        n -= k
    return h.hexdigest()
