#!/usr/bin/env python3
"""Helpers for pilotd_userspace.sh: a SOCKS5 / HTTP proxy client that shows the
raw answers curl hides.

  socks-get PROXYPORT HOST PORT PATH  CONNECT to HOST (as a domain name) and GET
                                      PATH; prints "<status> <sha256 of body>"
  socks-code PROXYPORT HOST PORT      CONNECT; prints "<reply code> <seconds>"
  socks-udp PROXYPORT HOST PORT MSG   UDP ASSOCIATE, one datagram to HOST:PORT,
                                      prints the payload of the reply
  udp-echo BIND PORT                  UDP echo server ("echo:" + payload)
  junk SOCKSPORT HTTPPORT             malformed requests to both proxies: each one
                                      must get an error answer or a close within
                                      3 s; prints one line per case, exits 1 on a hang
"""
import hashlib
import socket
import struct
import sys
import time


def socks_connect(port, host, dport, timeout=20):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        raise SystemExit("no-auth refused")
    h = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(h)]) + h + struct.pack(">H", int(dport)))
    rep = b""
    while len(rep) < 10:
        b = s.recv(10 - len(rep))
        if not b:
            break
        rep += b
    return s, rep


def socks_get(port, host, dport, path):
    s, rep = socks_connect(port, host, dport)
    if len(rep) < 2 or rep[1] != 0:
        print("socks-error", rep[1] if len(rep) > 1 else -1)
        return 1
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ")[1].decode() if b" " in head else "?"
    print(status, hashlib.sha256(body).hexdigest())
    return 0


def socks_code(port, host, dport):
    t0 = time.monotonic()
    _, rep = socks_connect(port, host, dport)
    print(rep[1] if len(rep) > 1 else -1, f"{time.monotonic() - t0:.2f}")
    return 0


def socks_udp(port, host, dport, msg):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    rep = s.recv(10)
    if len(rep) < 10 or rep[1] != 0:
        print("udp-associate-refused", rep[1] if len(rep) > 1 else -1)
        return 1
    relay = (socket.inet_ntoa(rep[4:8]), struct.unpack(">H", rep[8:10])[0])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(2)
    h = host.encode()
    pkt = b"\x00\x00\x00\x03" + bytes([len(h)]) + h + struct.pack(">H", int(dport)) + msg.encode()
    for _ in range(5):  # datagrams may be lost: a few tries
        u.sendto(pkt, relay)
        try:
            data, _ = u.recvfrom(65536)
        except socket.timeout:
            continue
        if data[3] == 1:
            print(data[10:].decode(errors="replace"))
            return 0
    print("no-reply")
    return 1


def udp_echo(bind, port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((bind, int(port)))
    while True:
        data, peer = u.recvfrom(65536)
        u.sendto(b"echo:" + data, peer)


SOCKS_JUNK = [
    ("socks_bad_version", b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00"),
    ("socks_zero_methods", b"\x05\x00"),
    ("socks_only_gssapi", b"\x05\x01\x01"),
    ("socks_bad_request_version", b"\x05\x01\x00\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
    ("socks_bad_reserved", b"\x05\x01\x00\x05\x01\x07\x01\x7f\x00\x00\x01\x00\x50"),
    ("socks_bad_atyp", b"\x05\x01\x00\x05\x01\x00\x09\x7f\x00\x00\x01\x00\x50"),
    ("socks_bind_cmd", b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"),
    ("socks_empty_domain", b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50"),
    ("socks_bad_name", b"\x05\x01\x00\x05\x01\x00\x03\x04a b!\x00\x50"),
    ("socks_garbage", bytes(range(256)) * 8),
]
HTTP_JUNK = [
    ("http_garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n"),
    ("http_no_version", b"CONNECT alpha.pilot:80\r\n\r\n"),
    ("http_no_port", b"CONNECT alpha.pilot HTTP/1.1\r\n\r\n"),
    ("http_port_zero", b"CONNECT alpha.pilot:0 HTTP/1.1\r\n\r\n"),
    ("http_port_big", b"CONNECT alpha.pilot:99999 HTTP/1.1\r\n\r\n"),
    ("http_https_absolute", b"GET https://alpha.pilot/ HTTP/1.1\r\n\r\n"),
    ("http_lowercase_method", b"get http://alpha.pilot/ HTTP/1.1\r\n\r\n"),
    ("http_huge_head", b"GET http://alpha.pilot/ HTTP/1.1\r\n" + b"X-A: " + b"a" * 20000 + b"\r\n\r\n"),
    ("http_nul_in_host", b"CONNECT al\x00pha.pilot:80 HTTP/1.1\r\n\r\n"),
]


def one_junk(port, name, payload):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=3)
    try:
        s.sendall(payload)
    except OSError:
        pass
    t0 = time.monotonic()
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except ConnectionResetError:
        pass
    except socket.timeout:
        print(name, "HANG", got[:40])
        return False
    print(name, f"{time.monotonic() - t0:.2f}s", got[:40])
    return True


def junk(socks_port, http_port):
    ok = True
    for name, payload in SOCKS_JUNK:
        ok &= one_junk(socks_port, name, payload)
    for name, payload in HTTP_JUNK:
        ok &= one_junk(http_port, name, payload)
    return 0 if ok else 1


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "socks-get":
        return socks_get(*args)
    if cmd == "socks-code":
        return socks_code(*args)
    if cmd == "socks-udp":
        return socks_udp(*args)
    if cmd == "udp-echo":
        return udp_echo(*args)
    if cmd == "junk":
        return junk(*args)
    raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    sys.exit(main())
