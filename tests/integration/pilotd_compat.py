#!/usr/bin/env python3
"""Helpers for pilotd_compat.sh.

  echo SOCK NODE CHUNKS SIZE TIMEOUT   CHUNKS echoes of SIZE random bytes (one stream
                                        segment each: SIZE <= 1368) over port 7; the
                                        SHA-256 of everything sent must equal that of
                                        everything echoed. Prints "ok BYTES SHA".
  peers RHOST RPORT WHOST WPORT N HOLD N idle authenticated ws:// peers (benchmark;
                                        Ed25519 from python3-cryptography or PyNaCl)
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

import ctlsock


def echo(sock, node, chunks, size, timeout):
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    hs, hr = hashlib.sha256(), hashlib.sha256()
    total = 0
    for i in range(int(chunks)):
        msg = bytes(alphabet[b % len(alphabet)] for b in os.urandom(int(size))).decode()
        r = ctlsock.request(sock, {"cmd": "connect", "args": {
            "node_id": int(node), "port": 7, "message": msg,
            "timeout_ms": int(float(timeout) * 1000)}},
            float(timeout) + 5)
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


def _signer():
    """An Ed25519 key generator: (public 32 bytes, sign(msg) -> 64 bytes)."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives import serialization

        def gen():
            sk = Ed25519PrivateKey.generate()
            pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return pk, sk.sign
    except ImportError:
        from nacl.signing import SigningKey

        def gen():
            sk = SigningKey.generate()
            return bytes(sk.verify_key), lambda m: sk.sign(m).signature
    return gen


def peers(reg_host, reg_port, wss_host, wss_port, count, hold):
    """count idle authenticated compat peers (plain ws://): register each key, dial,
    answer the challenge; print "connected N in T s" and hold them for hold
    seconds. Like an idle daemon, each peer sends a beacon Discover (5 bytes)
    every KEEPALIVE_S so the bridge's 90 s idle limit never fires, and whatever
    the bridge sends is read and dropped. Bounded: the dialling stops after
    DIAL_BUDGET_S."""
    import resource
    KEEPALIVE_S, DIAL_BUDGET_S = 20.0, 600.0
    count, hold = int(count), float(hold)
    want = count + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    gen = _signer()
    reg = socket.create_connection((reg_host, int(reg_port)), timeout=10)
    keys = []
    t0 = time.time()
    for _ in range(count):
        pk, sign = gen()
        body = json.dumps({"type": "register", "public_key": base64.b64encode(pk).decode(),
                           "listen_addr": "0.0.0.0:0", "relay_only": True}).encode()
        reg.sendall(struct.pack(">I", len(body)) + body)
        (n,) = struct.unpack(">I", reg.recv(4, socket.MSG_WAITALL))
        r = json.loads(reg.recv(n, socket.MSG_WAITALL))
        keys.append((sign, int(r["node_id"])))
    reg.close()
    print(f"registered {len(keys)} in {time.time() - t0:.1f} s", flush=True)
    conns = []  # (socket, node)
    last_ka = time.time()

    def keepalive():
        for c, node in conns:
            try:
                c.send(frame(2, bytes([1]) + struct.pack(">I", node)))
            except OSError:
                pass
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass

    t0 = time.time()
    for sign, node in keys:
        if time.time() - t0 > DIAL_BUDGET_S:
            print(f"dial budget of {DIAL_BUDGET_S:.0f} s spent", flush=True)
            break
        if time.time() - last_ka > KEEPALIVE_S:
            keepalive()
            last_ka = time.time()
        try:
            s = socket.create_connection((wss_host, int(wss_port)), timeout=10)
            status, rest = upgrade(s, wss_host)
            if " 101 " not in status + " ":
                print("upgrade refused:", status)
                s.close()
                break
            _, payload, rest = read_frame(s, rest)
            ch = json.loads(payload)
            msg = f"compat_auth:{node}:{ch['ts']}:{ch['nonce']}".encode()
            sig = base64.b64encode(sign(msg)).decode()
            s.sendall(frame(1, json.dumps({"type": "auth_reply", "node_id": node, "public_key": "",
                                           "sig": sig}).encode()))
            _, payload, rest = read_frame(s, rest)
        except (OSError, ValueError, ConnectionError) as e:
            print("dial failed:", e)
            break
        if b"auth_ok" not in payload:
            print("auth refused:", payload[:80])
            s.close()
            break
        s.setblocking(False)
        conns.append((s, node))
    print(f"connected {len(conns)} in {time.time() - t0:.1f} s", flush=True)
    end = time.time() + hold
    while time.time() < end:
        time.sleep(min(1.0, max(0.0, end - time.time())))
        if time.time() - last_ka > KEEPALIVE_S:
            keepalive()
            last_ka = time.time()
    alive, why = 0, {}
    for c, _ in conns:  # still open: a read gives data or EAGAIN, not EOF or an error
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    why["eof"] = why.get("eof", 0) + 1
                    break
                if b[0] == 0x88:  # a close frame from the bridge
                    why["close " + b[2:40].decode(errors="replace")] = why.get("close", 0) + 1
                    break
        except BlockingIOError:
            alive += 1
        except OSError as e:
            why[type(e).__name__] = why.get(type(e).__name__, 0) + 1
        c.close()
    print(f"still open after the hold: {alive} {why if why else ''}", flush=True)
    return 0 if len(conns) == count and alive == count else 1


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
