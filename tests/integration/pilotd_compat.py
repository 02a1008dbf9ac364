#!/usr/bin/env python3
"""Helpers for pilotd_compat.sh.

  echo SOCK NODE CHUNKS SIZE TIMEOUT   CHUNKS echoes of SIZE random bytes (one stream
                                        segment each: SIZE <= 1368) over port 7; the
                                        SHA-256 of everything sent must equal that of
                                        everything echoed. Prints "ok BYTES SHA".
  peers RHOST RPORT WHOST WPORT N HOLD N idle authenticated ws:// peers (benchmark)
  junk HOST PORT                       bad input to the compat WebSocket port: raw
                                        bytes, TLS + junk, upgrades without auth,
                                        binary before auth, a bad signature, a slow
                                        client. Prints what it did.
"""
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time


def ctl_request(path, obj, timeout):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(timeout + 5)
    c.connect(path)
    body = json.dumps(obj).encode()
    c.sendall(struct.pack(">I", len(body)) + body)
    hdr = c.recv(4, socket.MSG_WAITALL)
    (n,) = struct.unpack(">I", hdr)
    reply = json.loads(c.recv(n, socket.MSG_WAITALL))
    c.close()
    return reply


def echo(sock, node, chunks, size, timeout):
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    hs, hr = hashlib.sha256(), hashlib.sha256()
    total = 0
    for i in range(int(chunks)):
        msg = bytes(alphabet[b % len(alphabet)] for b in os.urandom(int(size))).decode()
        r = ctl_request(sock, {"cmd": "connect", "args": {
            "node_id": int(node), "port": 7, "message": msg,
            "timeout_ms": int(float(timeout) * 1000)}},
            float(timeout))
        if r.get("status") != "ok":
            print(f"chunk {i}: {r}")
            return 1
        hs.update(msg.encode())
        hr.update(r["data"]["response"].encode())
        total += len(msg)
    if hs.hexdigest() != hr.hexdigest():
        print(f"hash mismatch sent={hs.hexdigest()} echoed={hr.hexdigest()}")
        return 1
    print(f"ok {total} {hs.hexdigest()}")
    return 0


def tls_conn(host, port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((host, int(port)), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=None)


def upgrade(s, host, key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/compat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pilot.v1\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(4096)
        if not b:
            break
        data += b
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(errors="replace"), rest


def frame(opcode, payload, mask=True):
    hdr = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([m | n])
    elif n < 65536:
        hdr += bytes([m | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    k = os.urandom(4)
    return hdr + k + bytes(b ^ k[i % 4] for i, b in enumerate(payload))


def drain(s, secs=2.0):
    s.settimeout(secs)
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except (socket.timeout, OSError):
        pass
    return got


def junk(host, port):
    # 1. raw bytes where a TLS ClientHello belongs
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(os.urandom(4096))
        drain(s, 1)
        s.close()
    except OSError:
        pass
    print("raw junk sent")
    # 2. TLS, then an HTTP request that is not an upgrade, then garbage
    s = tls_conn(host, port)
    s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
    print("plain GET:", drain(s, 1)[:40])
    s.close()
    # 3. upgrade, then binary before authentication
    s = tls_conn(host, port)
    status, _ = upgrade(s, host)
    print("upgrade:", status)
    s.sendall(frame(2, b"\x05" + os.urandom(40)))
    print("binary before auth, server sent", len(drain(s, 2)), "bytes then closed")
    s.close()
    # 4. upgrade, a reply with a wrong signature
    s = tls_conn(host, port)
    upgrade(s, host)
    s.sendall(frame(1, json.dumps({"type": "auth_reply", "node_id": 1,
                                   "public_key": base64.b64encode(os.urandom(32)).decode(),
                                   "sig": base64.b64encode(os.urandom(64)).decode()}).encode()))
    print("bad signature, server sent", len(drain(s, 2)), "bytes")
    s.close()
    # 5. an oversize frame header (1 GiB) and an unmasked frame
    s = tls_conn(host, port)
    upgrade(s, host)
    s.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 30) + os.urandom(4) + os.urandom(1024))
    drain(s, 1)
    s.close()
    s = tls_conn(host, port)
    upgrade(s, host)
    s.sendall(frame(1, b"{}", mask=False))
    drain(s, 1)
    s.close()
    print("oversize and unmasked frames sent")
    # 6. a slow client: half an upgrade request, one byte a time
    s = tls_conn(host, port)
    req = b"GET /v1/compat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    try:
        for b in req[:20]:
            s.send(bytes([b]))
            time.sleep(0.05)
    except OSError:
        pass
    s.close()
    print("slow client done")
    return 0


def read_frame(s, buf):
    """One server frame (unmasked) from s; returns (opcode, payload, rest)."""
    while True:
        if len(buf) >= 2:
            n, off = buf[1] & 0x7F, 2
            if n == 126 and len(buf) >= 4:
                n, off = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127 and len(buf) >= 10:
                n, off = struct.unpack(">Q", buf[2:10])[0], 10
            if n < 126 or off > 2:
                if len(buf) >= off + n:
                    return buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
        b = s.recv(65536)
        if not b:
            raise ConnectionError("closed")
        buf += b


def peers(reg_host, reg_port, wss_host, wss_port, count, hold):
    """count idle authenticated compat peers (plain ws://): register each key, dial,
    answer the challenge; print "connected N" and hold them for hold seconds."""
    from nacl.signing import SigningKey
    reg = socket.create_connection((reg_host, int(reg_port)), timeout=10)
    keys, conns = [], []
    for _ in range(int(count)):
        sk = SigningKey.generate()
        pk = base64.b64encode(bytes(sk.verify_key)).decode()
        body = json.dumps({"type": "register", "public_key": pk, "listen_addr": "0.0.0.0:0"}).encode()
        reg.sendall(struct.pack(">I", len(body)) + body)
        (n,) = struct.unpack(">I", reg.recv(4, socket.MSG_WAITALL))
        r = json.loads(reg.recv(n, socket.MSG_WAITALL))
        keys.append((sk, int(r["node_id"])))
    reg.close()
    t0 = time.time()
    for sk, node in keys:
        s = socket.create_connection((wss_host, int(wss_port)), timeout=10)
        status, rest = upgrade(s, wss_host)
        if " 101 " not in status + " ":
            print("upgrade refused:", status)
            break
        _, payload, rest = read_frame(s, rest)
        ch = json.loads(payload)
        msg = f"compat_auth:{node}:{ch['ts']}:{ch['nonce']}".encode()
        sig = base64.b64encode(sk.sign(msg).signature).decode()
        s.sendall(frame(1, json.dumps({"type": "auth_reply", "node_id": node, "public_key": "",
                                       "sig": sig}).encode()))
        _, payload, rest = read_frame(s, rest)
        if b"auth_ok" not in payload:
            print("auth refused:", payload[:80])
            break
        conns.append(s)
    print(f"connected {len(conns)} in {time.time() - t0:.1f} s", flush=True)
    time.sleep(float(hold))
    for s in conns:
        s.close()
    return 0 if len(conns) == int(count) else 1


def main():
    if len(sys.argv) == 8 and sys.argv[1] == "peers":
        return peers(*sys.argv[2:8])
    if len(sys.argv) >= 7 and sys.argv[1] == "echo":
        return echo(*sys.argv[2:7])
    if len(sys.argv) == 4 and sys.argv[1] == "junk":
        return junk(sys.argv[2], sys.argv[3])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
