#!/usr/bin/env python3
"""Helpers for pilotd_tun.sh: ordinary programs that know nothing about Pilot.

  serve BIND PORT DIR        HTTP: files from DIR, GET /json, GET /infinite (endless
                             stream), POST /upload (replies with the body's SHA-256)
  halfclose-server BIND PORT read until EOF, reply "<bytes> <sha256>", close
  halfclose-client IP PORT N send N bytes, shutdown(SHUT_WR), check the reply
  badpackets DEV DST         write malformed IPv4/IPv6/TCP/UDP/ICMP packets into
                             the TUN device DEV (AF_PACKET: they reach pilotd as
                             they are, no kernel fix-ups), toward DST (a mapped IP)
  udpburst-recv PORT N OUT   receive datagrams from udpburst-send for up to 10 s (or
                             until N), check every byte, write "<good> <bad>" to OUT
  udpburst-send IP PORT N    N datagrams back to back: runs of 1000 bytes broken by a
                             short one every 50th and a 1400-byte one every 97th
"""
import hashlib
import http.server
import json
import os
import socket
import struct
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        if self.path == "/json":
            body = json.dumps({"node": "bravo", "via": "pilot", "ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/infinite":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = os.urandom(65536)
            try:
                while True:
                    self.wfile.write(chunk)
            except OSError:
                return
        super().do_GET()

    def do_POST(self):
        left = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        while left > 0:
            b = self.rfile.read(min(left, 1 << 20))
            if not b:
                break
            h.update(b)
            left -= len(b)
        body = (h.hexdigest() + "\n").encode()
        self.send_response(200 if left == 0 else 400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(bind, port, directory):
    os.chdir(directory)
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer((bind, int(port)), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


def halfclose_server(bind, port):
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, int(port)))
    s.listen(8)
    while True:
        c, _ = s.accept()
        h, n = hashlib.sha256(), 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            h.update(b)
            n += len(b)
        c.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
        c.close()


def halfclose_client(ip, port, nbytes):
    data = os.urandom(int(nbytes))
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.create_connection((ip, int(port)), timeout=20)
    assert fam == s.family
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        reply += b
    want = "%d %s" % (len(data), hashlib.sha256(data).hexdigest())
    got = reply.decode(errors="replace").strip()
    if got != want:
        print("half-close: want %r got %r" % (want, got))
        sys.exit(1)
    print("half-close ok: %s" % got)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(src, dst, proto, payload, ihl=5, tot=None, frag=0, ver=4, opts=b""):
    tot = 20 + len(opts) + len(payload) if tot is None else tot
    h = struct.pack("!BBHHHBBH4s4s", (ver << 4) | ihl, 0, tot & 0xFFFF, 1, frag, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst)) + opts
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ip6(src, dst, nh, payload, plen=None):
    plen = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 6 << 28, plen & 0xFFFF, nh, 64,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + payload


def bad_packets(src, dst, src6, dst6):
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    udp = struct.pack("!HHHH", 40000, 9, 8 + 4, 0) + b"abcd"
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"
    out = [
        b"\x45",                                    # one byte
        b"\x45" + b"\0" * 10,                       # shorter than a header
        ip4(src, dst, 6, tcp, ihl=4),               # IHL < 5
        ip4(src, dst, 6, tcp, ihl=15),              # IHL past the end
        ip4(src, dst, 6, tcp, tot=10),              # total length < header
        ip4(src, dst, 6, tcp, tot=4000),            # total length > packet
        ip4(src, dst, 6, tcp[:7]),                  # truncated TCP header
        ip4(src, dst, 6, tcp[:12] + bytes([15 << 4]) + tcp[13:]),  # TCP data offset past the end
        ip4(src, dst, 6, tcp[:12] + bytes([2 << 4]) + tcp[13:]),   # TCP data offset < 5
        ip4(src, dst, 17, udp[:5]),                 # truncated UDP header
        ip4(src, dst, 17, udp[:4] + struct.pack("!H", 200) + udp[6:]),  # UDP length > packet
        ip4(src, dst, 17, udp[:4] + struct.pack("!H", 3) + udp[6:]),    # UDP length < 8
        ip4(src, dst, 1, icmp[:3]),                 # truncated ICMP
        ip4(src, dst, 6, tcp, frag=0x2000),         # a first fragment (MF)
        ip4(src, dst, 6, tcp, frag=0x0010),         # a later fragment
        ip4(src, dst, 132, b"\0" * 32),             # SCTP: unsupported
        ip4(src, dst, 6, tcp, ver=7),               # version 7
        ip4("1.2.3.4", dst, 6, tcp),                # not from the own IP
        ip4(src, "10.4.255.254", 6, tcp),           # unmapped destination
        ip6(src6, dst6, 6, tcp[:9]),                # IPv6 truncated TCP
        ip6(src6, dst6, 6, tcp, plen=3000),         # IPv6 payload length > packet
        ip6(src6, dst6, 17, udp, plen=2),           # IPv6 payload length < UDP header
        ip6(src6, dst6, 0, b"\x06\x08" + b"\0" * 4),  # hop-by-hop header past the end
        ip6(src6, dst6, 58, b"\x80"),               # ICMPv6 truncated
        bytes(range(256)) * 4,                      # noise
    ]
    for i in range(200):
        out.append(os.urandom(1 + (i * 37) % 1500))
    return out


def badpackets(dev, dst):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
    ifi = socket.if_nametoindex(dev)
    src = "10.4.0.1"
    src6 = dst6 = None
    for line in open("/proc/net/if_inet6"):
        f = line.split()
        if f[5] == dev and f[0].startswith("fd50"):
            src6 = ":".join(f[0][i:i + 4] for i in range(0, 32, 4))
    src6 = src6 or "fd50:494c:4f54::1"
    dst6 = "fd50:494c:4f54::ffff:fff0"
    n = 0
    for p in bad_packets(src, dst, src6, dst6):
        proto = 0x86DD if p[:1] and p[0] >> 4 == 6 else 0x0800
        try:
            s.sendto(p, (dev, proto, 0, 0, b""))
            n += 1
        except OSError as e:
            print("not sent (%d bytes): %s" % (len(p), e))
    print("sent %d malformed packets into %s (ifindex %d)" % (n, dev, ifi))


def burst_payload(i):
    n = 1400 if i % 97 == 0 else 300 + i % 7 if i % 50 == 49 else 1000
    return struct.pack("!II", i, n) + bytes((i + k) & 0xFF for k in range(n - 8))


def udpburst_recv(port, n, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.settimeout(10)
    with open(out + ".ready", "w"):
        pass
    good = bad = 0
    seen = set()
    try:
        while len(seen) < n:
            d = s.recv(65535)
            s.settimeout(3)
            i = struct.unpack("!I", d[:4])[0] if len(d) >= 8 else -1
            if 0 <= i < n and d == burst_payload(i) and i not in seen:
                seen.add(i)
                good += 1
            else:
                bad += 1
    except socket.timeout:
        pass
    with open(out, "w") as f:
        f.write("%d %d\n" % (good, bad))


def udpburst_send(ip, port, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    for i in range(n):
        s.sendto(burst_payload(i), (ip, port))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(*args)
    elif cmd == "halfclose-server":
        halfclose_server(*args)
    elif cmd == "halfclose-client":
        halfclose_client(*args)
    elif cmd == "udpburst-recv":
        udpburst_recv(int(args[0]), int(args[1]), args[2])
    elif cmd == "udpburst-send":
        udpburst_send(args[0], int(args[1]), int(args[2]))
    elif cmd == "badpackets":
        badpackets(*args)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
