#!/usr/bin/python3
"""Registry test client for tests/integration/rendezvous.sh.

Speaks the registry wire (4-byte big-endian length + JSON object, registry.md
§3) with real Ed25519 signatures (PyNaCl). Each sub-command is one scenario that
prints "PASS: <name>" / "FAIL: <name> ..." lines; the shell script starts, kills
and restarts the daemons around them. Loopback only: every scenario binds its
own 127.x source address so per-IP rate limits of one do not leak into another.
REG_HOST=addr (load and checkids only, e.g. inside a test's network namespace)
targets that address instead, from the namespace's own address; REG_LOAD_GAP=s
paces load.
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
import urllib.error
import urllib.request

from nacl.signing import SigningKey

HOST = os.environ.get("REG_HOST", "127.0.0.1")
LOOPBACK = HOST.startswith("127.")
GAP = float(os.environ.get("REG_LOAD_GAP", "0"))  # load: seconds between registrations
FAILED = 0


def check(name, ok, detail=""):
    global FAILED
    if ok:
        print("PASS: %s" % name, flush=True)
    else:
        FAILED += 1
        print("FAIL: %s %s" % (name, detail), flush=True)
    return ok


class Closed(Exception):
    pass


class Conn:
    def __init__(self, port, src=None, timeout=5.0, tls=False):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if src:
            s.bind((src, 0))
        s.connect((HOST, port))
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.s = s

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, obj):
        body = json.dumps(obj).encode()
        self.send_raw(struct.pack(">I", len(body)) + body)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def recv(self):
        (n,) = struct.unpack(">I", self._read(4))
        return json.loads(self._read(n))

    def call(self, obj):
        self.send(obj)
        return self.recv()

    def closed_without_reply(self, wait=3.0):
        """True if the server closes the connection without sending anything."""
        self.s.settimeout(wait)
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


class Node:
    def __init__(self, conn, owner=None):
        self.key = SigningKey.generate()
        self.pub = base64.b64encode(bytes(self.key.verify_key)).decode()
        self.conn = conn
        self.id = None
        self.owner = owner

    def sig(self, msg):
        return base64.b64encode(self.key.sign(msg.encode()).signature).decode()

    def sig2(self, typ, fields, ts=None):
        """v2 signature: "pilot2:<type>:<sig_ts>:<fields>" (rendezvous/SIGNATURES.md)."""
        ts = int(time.time()) if ts is None else ts
        return self.sig("pilot2:%s:%d:%s" % (typ, ts, fields)), ts

    def register(self, listen="0.0.0.0:4000", **extra):
        req = {"type": "register", "public_key": self.pub, "listen_addr": listen}
        if self.owner:
            req["owner"] = self.owner
        req.update(extra)
        r = self.conn.call(req)
        if r.get("type") == "register_ok":
            self.id = r["node_id"]
        return r

    def signed(self, typ, challenge, **fields):
        req = {"type": typ, "signature": self.sig(challenge)}
        req.update(fields)
        return self.conn.call(req)


def ok(r, typ):
    return r.get("type") == typ + "_ok"


def err(r):
    return r.get("type") == "error" and isinstance(r.get("error"), str)


# ---- scenarios ----------------------------------------------------------------


def sc_roundtrip(port, admin):
    c = Conn(port, "127.0.1.1")
    a, b = Node(c, owner="a@example.org"), Node(c)
    r = a.register(hostname="alpha-node")
    check("rt_register", ok(r, "register") and r.get("address", "").startswith("0:0000.")
          and r.get("public_key") == a.pub, r)
    check("rt_register_second", ok(b.register(), "register") and b.id != a.id)
    r = a.signed("heartbeat", "heartbeat:%d" % a.id, node_id=a.id)
    check("rt_heartbeat", ok(r, "heartbeat") and isinstance(r.get("time"), int), r)
    r = c.call({"type": "lookup", "node_id": a.id})
    check("rt_lookup", ok(r, "lookup") and r.get("public_key") == a.pub and "real_addr" not in r, r)
    r = a.signed("set_visibility", "set_visibility:%d" % a.id, node_id=a.id, public=True)
    check("rt_set_visibility", ok(r, "set_visibility") and r.get("visibility") == "public", r)
    r = c.call({"type": "lookup", "node_id": a.id})
    check("rt_lookup_public_shows_endpoint", r.get("real_addr", "").endswith(":4000"), r)
    r = b.signed("resolve", "resolve:%d:%d" % (b.id, a.id), node_id=a.id, requester_id=b.id)
    check("rt_resolve_public", ok(r, "resolve") and r.get("real_addr", "").endswith(":4000"), r)
    r = a.signed("set_hostname", "set_hostname:%d" % a.id, node_id=a.id, hostname="alpha")
    check("rt_set_hostname", ok(r, "set_hostname") and r.get("hostname") == "alpha", r)
    r = c.call({"type": "resolve_hostname", "hostname": "alpha"})
    check("rt_resolve_hostname", ok(r, "resolve_hostname") and r.get("node_id") == a.id, r)
    r = a.signed("set_tags", "set_tags:%d" % a.id, node_id=a.id, tags=["#gpu", "db"])
    check("rt_set_tags", ok(r, "set_tags") and r.get("tags") == ["gpu", "db"], r)
    r = a.signed("set_task_exec", "set_task_exec:%d" % a.id, node_id=a.id, enabled=True)
    check("rt_set_task_exec", ok(r, "set_task_exec") and r.get("task_exec") is True, r)
    r = c.call({"type": "list_networks"})
    check("rt_list_networks", ok(r, "list_networks")
          and any(n.get("id") == 0 for n in r.get("networks", [])), r)
    r = a.signed("report_trust", "report_trust:%d:%d" % (a.id, b.id), node_id=a.id, peer_id=b.id)
    check("rt_report_trust", ok(r, "report_trust"), r)
    r = b.signed("report_trust", "report_trust:%d:%d" % (b.id, a.id), node_id=b.id, peer_id=a.id)
    r = a.signed("revoke_trust", "revoke_trust:%d:%d" % (a.id, b.id), node_id=a.id, peer_id=b.id)
    check("rt_revoke_trust", ok(r, "revoke_trust"), r)
    r = a.signed("request_handshake", "handshake:%d:%d" % (a.id, b.id), from_node_id=a.id,
                 to_node_id=b.id, justification="hello")
    check("rt_request_handshake", ok(r, "request_handshake"), r)
    r = b.signed("poll_handshakes", "poll_handshakes:%d" % b.id, node_id=b.id)
    check("rt_poll_handshakes", ok(r, "poll_handshakes")
          and any(q.get("from_node_id") == a.id for q in r.get("requests", [])), r)
    r = b.signed("respond_handshake", "respond:%d:%d" % (b.id, a.id), node_id=b.id, peer_id=a.id,
                 accept=True)
    check("rt_respond_handshake", ok(r, "respond_handshake") and r.get("accept") is True, r)
    r = c.call({"type": "get_polo_score", "node_id": a.id})
    check("rt_get_polo_score", ok(r, "get_polo_score") and "polo_score" in r, r)
    r = c.call({"type": "set_polo_score", "node_id": a.id, "polo_score": 7})
    check("rt_set_polo_score", ok(r, "set_polo_score") or err(r), r)
    r = c.call({"type": "update_polo_score", "node_id": a.id, "delta": 1})
    check("rt_update_polo_score", ok(r, "update_polo_score") or err(r), r)
    r = a.signed("punch", "punch:%d:%d" % (a.id, b.id), requester_id=a.id, node_a=a.id, node_b=b.id)
    check("rt_punch", ok(r, "punch") or err(r), r)
    r = c.call({"type": "beacon_register", "beacon_id": 7, "addr": "127.0.0.1:9001"})
    check("rt_beacon_register", ok(r, "beacon_register"), r)
    r = c.call({"type": "beacon_list"})
    check("rt_beacon_list", ok(r, "beacon_list")
          and any(x.get("id") == 7 for x in r.get("beacons", [])), r)
    body = {"node_id": a.id, "name": "rt-net", "join_rule": "open"}
    if admin:
        body["admin_token"] = admin
    r = a.signed("create_network", "create_network:%d:rt-net" % a.id, **body)
    check("rt_create_network", ok(r, "create_network"), r)
    net = r.get("network_id", 0)
    r = b.signed("join_network", "join_network:%d:%d" % (b.id, net), node_id=b.id, network_id=net)
    check("rt_join_network", ok(r, "join_network"), r)
    r = c.call({"type": "list_nodes", "network_id": net})
    check("rt_list_nodes", ok(r, "list_nodes") and len(r.get("nodes", [])) == 2, r)
    r = b.signed("leave_network", "leave_network:%d:%d" % (b.id, net), node_id=b.id, network_id=net)
    check("rt_leave_network", ok(r, "leave_network"), r)
    new = SigningKey.generate()
    newpub = base64.b64encode(bytes(new.verify_key)).decode()
    r = b.signed("rotate_key", "rotate:%d" % b.id, node_id=b.id, new_public_key=newpub)
    check("rt_rotate_key", ok(r, "rotate_key") and r.get("public_key") == newpub, r)
    b.key, b.pub = new, newpub
    r = b.signed("deregister", "deregister:%d" % b.id, node_id=b.id)
    check("rt_deregister", ok(r, "deregister"), r)
    r = c.call({"type": "lookup", "node_id": b.id})
    check("rt_lookup_after_deregister", err(r), r)
    r = a.signed("heartbeat", "heartbeat:%d" % a.id, node_id=a.id + 1000)
    check("rt_bad_signature_refused", err(r), r)
    c.close()


def sc_privacy(port, admin):
    c = Conn(port, "127.0.1.2")
    a, b, x, y = Node(c), Node(c), Node(c), Node(c)
    for n in (a, b, x, y):
        n.register()

    def resolve(q, t):
        return q.signed("resolve", "resolve:%d:%d" % (q.id, t.id), node_id=t.id, requester_id=q.id)

    check("privacy_private_hidden", err(resolve(b, a)))
    r = c.call({"type": "lookup", "node_id": a.id})
    check("privacy_lookup_no_endpoint", ok(r, "lookup") and "real_addr" not in r, r)
    b.signed("report_trust", "report_trust:%d:%d" % (b.id, a.id), node_id=b.id, peer_id=a.id)
    check("privacy_one_sided_trust_hidden", err(resolve(b, a)))
    a.signed("report_trust", "report_trust:%d:%d" % (a.id, b.id), node_id=a.id, peer_id=b.id)
    r = resolve(b, a)
    check("privacy_mutual_trust_visible", ok(r, "resolve") and r.get("real_addr"), r)
    check("privacy_third_party_hidden", err(resolve(x, a)))
    # A shared (non-backbone) network also discloses endpoints.
    r = x.signed("create_network", "create_network:%d:priv-net" % x.id, node_id=x.id,
                 name="priv-net", join_rule="open", admin_token=admin)
    net = r.get("network_id", 0)
    check("privacy_no_shared_net_hidden", err(resolve(y, x)))
    y.signed("join_network", "join_network:%d:%d" % (y.id, net), node_id=y.id, network_id=net)
    r = resolve(y, x)
    check("privacy_shared_network_visible", ok(r, "resolve") and r.get("real_addr"), r)
    c.close()


def sc_netrules(port, admin):
    c = Conn(port, "127.0.1.3")
    a, b, d = Node(c), Node(c), Node(c)
    for n in (a, b, d):
        n.register()

    def create(name, rule, token=None, adm=None):
        body = {"node_id": a.id, "name": name, "join_rule": rule}
        if token:
            body["token"] = token
        if adm:
            body["admin_token"] = adm
        return a.signed("create_network", "create_network:%d:%s" % (a.id, name), **body)

    def join(n, net, **extra):
        return n.signed("join_network", "join_network:%d:%d" % (n.id, net), node_id=n.id,
                        network_id=net, **extra)

    r = create("gated", "open")
    check("admin_create_without_token_refused", err(r), r)
    r = create("gated", "open", adm="wrong-" + admin)
    check("admin_create_wrong_token_refused", err(r), r)
    r = create("tok-net", "token", token="s3cret", adm=admin)
    check("admin_create_with_token", ok(r, "create_network"), r)
    tnet = r.get("network_id", 0)
    check("net_token_wrong_refused", err(join(b, tnet, token="nope")))
    check("net_token_missing_refused", err(join(b, tnet)))
    check("net_token_right_joins", ok(join(b, tnet, token="s3cret"), "join_network"))
    check("net_already_member_refused", err(join(b, tnet, token="s3cret")))
    r = create("inv-net", "invite", adm=admin)
    inet = r.get("network_id", 0)
    check("net_invite_only_refused", err(join(b, inet)))
    r = a.signed("invite_to_network", "invite:%d:%d:%d" % (a.id, inet, b.id), inviter_id=a.id,
                 network_id=inet, target_node_id=b.id)
    check("net_invite_sent", ok(r, "invite_to_network"), r)
    r = b.signed("poll_invites", "poll_invites:%d" % b.id, node_id=b.id)
    check("net_poll_invites", ok(r, "poll_invites") and len(r.get("invites", [])) >= 1, r)
    r = b.signed("respond_invite", "respond_invite:%d:%d" % (b.id, inet), node_id=b.id,
                 network_id=inet, accept=True)
    check("net_invite_accepted", ok(r, "respond_invite"), r)
    r = c.call({"type": "list_nodes", "network_id": inet})
    check("net_invite_member_listed", any(n.get("node_id") == b.id for n in r.get("nodes", [])), r)
    check("net_backbone_join_refused", err(join(d, 0)))
    check("net_admin_bypasses_rule", ok(c.call({"type": "join_network", "node_id": d.id,
                                                "network_id": inet, "admin_token": admin}),
                                           "join_network"))
    r = c.call({"type": "list_nodes", "network_id": 0})
    check("net_list_backbone_refused", err(r), r)
    c.close()


def sc_ratelimit(port):
    c = Conn(port, "127.0.1.4")
    limited = None
    for i in range(40):
        r = Node(c).register()
        if err(r):
            limited = i
            break
    check("ratelimit_register_limited", limited is not None and limited >= 1,
          "no limit after 40 registrations" if limited is None else "limited at %d" % limited)
    check("ratelimit_connection_still_usable", ok(c.call({"type": "list_networks"}), "list_networks"))
    c.close()


def sc_replay(port):
    c = Conn(port, "127.0.1.5")
    a = Node(c)
    a.register()
    sig, ts = a.sig2("heartbeat", str(a.id))
    req = {"type": "heartbeat", "node_id": a.id, "signature": sig, "sig_ts": ts}
    r = c.call(req)
    check("replay_v2_first_accepted", ok(r, "heartbeat"), r)
    r = c.call(req)
    check("replay_v2_second_refused", err(r) and r.get("code", "replayed_signature") == "replayed_signature", r)
    sig, ts = a.sig2("heartbeat", str(a.id), ts=int(time.time()) - 3600)
    r = c.call({"type": "heartbeat", "node_id": a.id, "signature": sig, "sig_ts": ts})
    check("replay_v2_stale_refused", err(r), r)
    sig, ts = a.sig2("set_hostname", str(a.id))
    r = c.call({"type": "heartbeat", "node_id": a.id, "signature": sig, "sig_ts": ts})
    check("replay_v2_other_type_refused", err(r), r)
    c.close()


def sc_malformed(port):
    src = "127.0.1.6"

    def fresh():
        return Conn(port, src)

    c = fresh()
    c.send_raw(struct.pack(">I", (1 << 20) + 1) + b"{")
    check("malformed_oversize_closed", c.closed_without_reply())
    c = fresh()
    c.send_raw(struct.pack(">I", 0xFFFFFFFF))
    check("malformed_huge_length_closed", c.closed_without_reply())
    c = fresh()
    c.send_raw(struct.pack(">I", 9) + b"{not json")
    check("malformed_invalid_json_closed", c.closed_without_reply())
    c = fresh()
    c.send_raw(struct.pack(">I", 7) + b"[1,2,3]")
    check("malformed_json_array_closed", c.closed_without_reply())
    c = fresh()
    c.send_raw(struct.pack(">I", 0))
    check("malformed_empty_body_closed", c.closed_without_reply())
    c = fresh()
    r = c.call({"type": "lookup", "node_id": "seven"})
    check("malformed_wrong_type_error", err(r), r)
    r = c.call({"type": 42})
    check("malformed_type_not_string_error", err(r), r)
    r = c.call({"type": "no_such_request"})
    check("malformed_unknown_type_error", err(r), r)
    r = c.call({"node_id": 1})
    check("malformed_missing_type_error", err(r), r)
    r = c.call({"type": "register", "public_key": 12})
    check("malformed_register_bad_key_error", err(r), r)
    r = c.call({"type": "list_networks"})
    check("malformed_connection_survives_errors", ok(r, "list_networks"), r)
    # Two frames in one write, and one frame split across writes.
    one = json.dumps({"type": "list_networks"}).encode()
    frame = struct.pack(">I", len(one)) + one
    c.send_raw(frame + frame)
    check("malformed_pipelined_frames", ok(c.recv(), "list_networks") and ok(c.recv(), "list_networks"))
    c.send_raw(frame[:3])
    time.sleep(0.2)
    c.send_raw(frame[3:])
    check("malformed_split_frame", ok(c.recv(), "list_networks"))
    c.close()
    c = fresh()
    check("malformed_server_still_serves", ok(c.call({"type": "list_networks"}), "list_networks"))
    c.close()


def sc_slowloris(port, timeout_s):
    slow = Conn(port, "127.0.1.7")
    slow.send_raw(b"\x00\x00")
    t0 = time.time()
    other = Conn(port, "127.0.1.8")
    r = other.call({"type": "list_networks"})
    check("slowloris_others_served", ok(r, "list_networks") and time.time() - t0 < timeout_s, r)
    closed = slow.closed_without_reply(wait=timeout_s + 5)
    elapsed = time.time() - t0
    check("slowloris_closed_after_timeout", closed and elapsed >= timeout_s * 0.8,
          "closed=%s after %.1fs" % (closed, elapsed))
    # A silent client that never starts a frame is governed by -idle-timeout, not this.
    r = other.call({"type": "list_networks"})
    check("slowloris_server_still_serves", ok(r, "list_networks"), r)
    other.close()


def sc_conncap(port, per_ip):
    conns, refused = [], False
    for _ in range(per_ip + 2):
        c = Conn(port, "127.0.1.9")
        conns.append(c)
    # The refused connection is accepted by the kernel, then closed by the server.
    last = conns[-1]
    try:
        last.send({"type": "list_networks"})
        refused = last.closed_without_reply(wait=3)
    except (BrokenPipeError, ConnectionResetError):
        refused = True
    check("conncap_per_ip_refused", refused)
    c = Conn(port, "127.0.1.10")
    check("conncap_other_ip_served", ok(c.call({"type": "list_networks"}), "list_networks"))
    for x in conns + [c]:
        x.close()


def sc_load(port, n, out):
    """Register n nodes from many loopback sources (10 per source stays under the
    per-IP rate limit); append each acknowledged ID to out as soon as it is acked."""
    with open(out, "a") as f:
        for i in range(n):
            if i % 8 == 0:
                j = i // 8
                c = Conn(port, "127.2.%d.%d" % (j // 250, j % 250 + 1) if LOOPBACK else None)
            r = Node(c).register()
            if not ok(r, "register"):
                print("load: register failed at %d: %s" % (i, r), file=sys.stderr)
                return
            f.write("%d\n" % r["node_id"])
            f.flush()
            if GAP:
                time.sleep(GAP)


def sc_checkids(port, path):
    """Look every acknowledged ID up (200 per source address: reads are rate
    limited per source too)."""
    ids = [int(x) for x in open(path).read().split()]
    missing = []
    for i, nid in enumerate(ids):
        if i % 200 == 0:
            c = Conn(port, "127.3.0.%d" % (i // 200 + 1) if LOOPBACK else None)
        r = c.call({"type": "lookup", "node_id": nid})
        if not ok(r, "lookup"):
            missing.append((nid, r.get("code")))
    check("killed_acked_registrations_survive", ids and not missing,
          "%d acked, missing %s" % (len(ids), missing[:10]))


def sc_register_save(port, path, src):
    c = Conn(port, src)
    a = Node(c)
    r = a.register()
    with open(path, "w") as f:
        f.write("%d\n" % a.id)
    check("setup_register_%s" % src, ok(r, "register"), r)


def sc_lookup_ids(port, path, name):
    ids = [int(x) for x in open(path).read().split()]
    c = Conn(port, "127.0.1.12")
    bad = [i for i in ids if not ok(c.call({"type": "lookup", "node_id": i}), "lookup")]
    check(name, ids and not bad, "missing %s" % bad)


def sc_pop(port):
    """Issue 12 §3: an unsigned register naming another node's key moves nothing;
    a reference-format daemon restarting from a new address is reachable there once
    its signed heartbeat arrived on the same connection; no v1 after v2."""
    c = Conn(port, "127.0.1.50")
    v, q = Node(c), Node(c)
    v.register()
    q.register()
    check("pop_victim_heartbeat", ok(v.signed("heartbeat", "heartbeat:%d" % v.id, node_id=v.id), "heartbeat"))
    v.signed("set_visibility", "set_visibility:%d" % v.id, node_id=v.id, public=True)
    x = Conn(port, "127.0.1.51")
    r = x.call({"type": "register", "public_key": v.pub, "listen_addr": "0.0.0.0:6666",
                "relay_only": True, "owner": "evil@example.org", "hostname": "evil-host"})
    check("pop_attacker_register_answered", ok(r, "register") and r.get("node_id") == v.id, r)
    r = c.call({"type": "lookup", "node_id": v.id})
    check("pop_attacker_lookup_unmoved", r.get("real_addr") == "127.0.1.50:4000"
          and "relay_only" not in r and "hostname" not in r, r)
    r = q.signed("resolve", "resolve:%d:%d" % (q.id, v.id), node_id=v.id, requester_id=q.id)
    check("pop_attacker_resolve_unmoved", r.get("real_addr") == "127.0.1.50:4000", r)
    r = c.call({"type": "resolve_hostname", "hostname": "evil-host"})
    check("pop_attacker_hostname_not_set", err(r), r)
    x.close()
    # the reference daemon restarts from a new address (new connection)
    n = Conn(port, "127.0.1.52")
    v.conn = n
    r = v.register(listen="0.0.0.0:5000")
    check("pop_restart_register", ok(r, "register") and r.get("node_id") == v.id, r)
    r = c.call({"type": "lookup", "node_id": v.id})
    check("pop_restart_waits_for_proof", r.get("real_addr") == "127.0.1.50:4000", r)
    r = v.signed("heartbeat", "heartbeat:%d" % v.id, node_id=v.id)
    check("pop_restart_heartbeat", ok(r, "heartbeat"), r)
    r = c.call({"type": "lookup", "node_id": v.id})
    check("pop_restart_reachable", r.get("real_addr") == "127.0.1.52:5000", r)
    # no downgrade
    sig, ts = v.sig2("heartbeat", "%d" % v.id)
    r = n.call({"type": "heartbeat", "node_id": v.id, "sig_ts": ts, "signature": sig})
    check("pop_v2_heartbeat", ok(r, "heartbeat"), r)
    r = v.signed("heartbeat", "heartbeat:%d" % v.id, node_id=v.id)
    check("pop_v1_after_v2_refused", r.get("code") == "bad_signature", r)
    n.close()
    c.close()


def sc_standby(primary, standby, token):
    c = Conn(primary, "127.0.1.13")
    a = Node(c)
    a.register()
    s = Conn(standby, "127.0.1.14")
    found = False
    for _ in range(100):
        if ok(s.call({"type": "lookup", "node_id": a.id}), "lookup"):
            found = True
            break
        time.sleep(0.1)
    check("standby_follows_primary", found)
    b = Node(c)
    b.register()
    found = False
    for _ in range(100):
        if ok(s.call({"type": "lookup", "node_id": b.id}), "lookup"):
            found = True
            break
        time.sleep(0.1)
    check("standby_follows_later_writes", found)
    r = Node(s).register()
    check("standby_refuses_register", err(r), r)
    r = s.call({"type": "set_polo_score", "node_id": a.id, "polo_score": 3})
    check("standby_refuses_writes", err(r), r)
    check("standby_serves_list_networks", ok(s.call({"type": "list_networks"}), "list_networks"))
    x = Conn(primary, "127.0.1.15")
    r = x.call({"type": "subscribe_replication", "token": "wrong"})
    check("replication_wrong_token_refused",
          r.get("error") == "invalid replication token" and x.closed_without_reply(), r)
    x = Conn(primary, "127.0.1.15")
    r = x.call({"type": "subscribe_replication", "token": token})
    check("replication_snapshot_sent", r.get("type") == "replication_snapshot"
          and isinstance(r.get("snapshot"), dict), str(r)[:200])
    # The stream stays open and carries a heartbeat every 15 s.
    x.s.settimeout(20)
    t0, hb = time.time(), False
    try:
        while time.time() - t0 < 19 and not hb:
            hb = x.recv().get("type") == "heartbeat"
    except (socket.timeout, Closed):
        pass
    check("replication_heartbeat", hb, "no heartbeat in %.0fs" % (time.time() - t0))


def sc_standby_tls(primary, standby, expect):
    """Register on a -tls primary; the standby replicating over TLS follows it
    (expect "follows") or, refusing the primary (wrong certificate or token),
    never gets it (expect "refused")."""
    c = Conn(primary, "127.0.1.21", tls=True)
    a = Node(c)
    check("standby_tls_primary_register", ok(a.register(), "register"))
    s = Conn(standby, "127.0.1.22")
    found = False
    for _ in range(40 if expect == "follows" else 30):
        if ok(s.call({"type": "lookup", "node_id": a.id}), "lookup"):
            found = True
            break
        time.sleep(0.1)
    if expect == "follows":
        check("standby_tls_follows_primary", found)
    else:
        check("standby_tls_refused_primary_%s" % expect, not found)


def sc_norepl(port):
    x = Conn(port, "127.0.1.16")
    r = x.call({"type": "subscribe_replication", "token": "anything"})
    check("replication_not_configured", r.get("error") == "replication not configured"
          and x.closed_without_reply(), r)


def sc_http(port, reg_port, extra):
    def get(path, headers=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    st, body = get("/healthz")
    check("http_healthz", st == 200 and body.startswith("ok ") and "db=up" in body, (st, body))
    Conn(reg_port, "127.0.1.17").call({"type": "list_networks"})
    st, body = get("/metrics", {"X-Real-IP": "203.0.113.9"})
    names = ["pilot_registry_nodes", "pilot_registry_nodes_online", "pilot_registry_trust_links", "pilot_registry_networks",
             "pilot_registry_requests_total", "pilot_registry_errors_total", "pilot_registry_rate_limited_total",
             "pilot_registry_registrations_total", "pilot_registry_deregistrations_total", "pilot_registry_connections",
             "pilot_uptime_seconds"]
    names += extra
    missing = [m for m in names if ("\n%s " % m) not in "\n" + body]
    check("http_metrics", st == 200 and not missing, "status %s missing %s" % (st, missing))
    st, _ = get("/nope")
    check("http_unknown_404", st == 404, st)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /" + b"a" * 10000)
    data = s.recv(100)
    check("http_oversize_request_refused", data == b"" or data.startswith(b"HTTP/1.1 431"), data)
    s.close()


def sc_tls(port, fingerprint):
    c = Conn(port, "127.0.1.18", tls=True)
    der = c.s.getpeercert(binary_form=True)
    check("tls_fingerprint_matches", hashlib.sha256(der).hexdigest() == fingerprint,
          hashlib.sha256(der).hexdigest())
    a = Node(c)
    check("tls_register", ok(a.register(), "register"))
    check("tls_lookup", ok(c.call({"type": "lookup", "node_id": a.id}), "lookup"))
    c.close()
    try:
        p = Conn(port, "127.0.1.18")
        p.send({"type": "list_networks"})
        p.s.settimeout(3)
        data = p.s.recv(4)
        check("tls_plaintext_refused", len(data) < 4 or data[0] != 0, data)
    except (ConnectionResetError, BrokenPipeError):
        check("tls_plaintext_refused", True)


def sc_hammer(port, seconds, ready):
    """Keep the registry busy: 8 connections, each writing 64 pipelined lookups at a
    time and reading the replies, until `seconds` pass or the server goes away
    (the shutdown under load test). Touches `ready` once the load runs."""
    conns = [Conn(port, "127.0.1.%d" % (40 + i), timeout=5) for i in range(8)]
    a = Node(conns[0])
    a.register()
    batch = b""
    for _ in range(64):
        body = json.dumps({"type": "lookup", "node_id": a.id}).encode()
        batch += struct.pack(">I", len(body)) + body
    end = time.time() + seconds
    n = 0
    try:
        while time.time() < end:
            for c in conns:
                c.send_raw(batch)
            for c in conns:
                for _ in range(64):
                    c.recv()
            n += 1
            if n == 10:
                open(ready, "w").close()
    except (OSError, Closed):
        pass  # the server shut down under us: expected


def sc_ping(port):
    """Exit 0 once the registry answers (readiness polling)."""
    try:
        c = Conn(port, "127.0.1.19", timeout=1)
        r = c.call({"type": "list_networks"})
        c.close()
        return 0 if ok(r, "list_networks") else 1
    except OSError:
        return 1


def run_scenario(cmd, fn):
    """Run the scenario fn (also for regmulti.py and regstore.py): a crash of the
    client is a failure of the scenario; exit 1 when any check failed."""
    try:
        fn()
    except Exception as e:
        check("%s_completed" % cmd, False, "%s: %s" % (type(e).__name__, e))
    sys.exit(1 if FAILED else 0)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ping":
        sys.exit(sc_ping(int(args[0])))
    fn = {
        "roundtrip": lambda: sc_roundtrip(int(args[0]), args[1] if len(args) > 1 else ""),
        "privacy": lambda: sc_privacy(int(args[0]), args[1]),
        "netrules": lambda: sc_netrules(int(args[0]), args[1]),
        "ratelimit": lambda: sc_ratelimit(int(args[0])),
        "replay": lambda: sc_replay(int(args[0])),
        "pop": lambda: sc_pop(int(args[0])),
        "malformed": lambda: sc_malformed(int(args[0])),
        "slowloris": lambda: sc_slowloris(int(args[0]), float(args[1])),
        "conncap": lambda: sc_conncap(int(args[0]), int(args[1])),
        "load": lambda: sc_load(int(args[0]), int(args[1]), args[2]),
        "checkids": lambda: sc_checkids(int(args[0]), args[1]),
        "register_save": lambda: sc_register_save(int(args[0]), args[1], args[2]),
        "lookup_ids": lambda: sc_lookup_ids(int(args[0]), args[1], args[2]),
        "standby": lambda: sc_standby(int(args[0]), int(args[1]), args[2]),
        "norepl": lambda: sc_norepl(int(args[0])),
        "standby_tls": lambda: sc_standby_tls(int(args[0]), int(args[1]), args[2]),
        "http": lambda: sc_http(int(args[0]), int(args[1]), args[2:]),
        "tls": lambda: sc_tls(int(args[0]), args[1]),
        "hammer": lambda: sc_hammer(int(args[0]), float(args[1]), args[2]),
    }[cmd]
    run_scenario(cmd, fn)


if __name__ == "__main__":
    main()
