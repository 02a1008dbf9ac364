#!/usr/bin/env python3
"""Two pilot-rendezvous instances on one PostgreSQL database (issue 18): what a
node does on one instance is seen on the other within a second, and the
database, not either process, decides races. Used by rendezvous_pg.sh.
Prints PASS/FAIL lines like regclient.py."""
import sys
import threading
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from regclient import Conn, Node, check, err, ok  # noqa: E402
import regclient  # noqa: E402

PUSH_S = 1.0  # cross-instance visibility bound


def within(fn, limit=PUSH_S, step=0.02):
    """Poll fn until truthy; (value, seconds) or (None, seconds) after limit."""
    t0 = time.monotonic()
    while True:
        v = fn()
        dt = time.monotonic() - t0
        if v or dt > limit:
            return (v if v else None), dt
        time.sleep(step)


def retrying(fn):
    """Call fn until it is not `busy` (a lost race is answered busy + retry_after_ms)."""
    for _ in range(20):
        r = fn()
        if r.get("code") != "busy":
            return r
        time.sleep(r.get("retry_after_ms", 100) / 1000.0)
    return r


def sc_cross(p1, p2, admin):
    c1, c2 = Conn(p1, "127.0.4.1"), Conn(p2, "127.0.4.2")
    a, b = Node(c1), Node(c2)
    check("multi_register_a_on_1", ok(retrying(a.register), "register"))
    check("multi_register_b_on_2", ok(retrying(b.register), "register"))
    check("multi_ids_distinct", a.id != b.id, (a.id, b.id))
    v, dt = within(lambda: ok(c1.call({"type": "lookup", "node_id": b.id}), "lookup"))
    check("multi_lookup_b_via_1_within_1s", v, "%.3f s" % dt)
    print("# lookup across instances after %.0f ms" % (dt * 1000))
    v, dt = within(lambda: ok(c2.call({"type": "lookup", "node_id": a.id}), "lookup"))
    check("multi_lookup_a_via_2_within_1s", v, "%.3f s" % dt)

    def resolve(q, t):
        return q.signed("resolve", "resolve:%d:%d" % (q.id, t.id), node_id=t.id, requester_id=q.id)

    check("multi_privacy_private_hidden_on_2", err(resolve(b, a)))
    a.signed("report_trust", "report_trust:%d:%d" % (a.id, b.id), node_id=a.id, peer_id=b.id)
    b.signed("report_trust", "report_trust:%d:%d" % (b.id, a.id), node_id=b.id, peer_id=a.id)
    v, dt = within(lambda: ok(resolve(b, a), "resolve") and ok(resolve(a, b), "resolve"))
    check("multi_privacy_mutual_trust_both_instances", v, "%.3f s" % dt)
    r = a.signed("revoke_trust", "revoke_trust:%d:%d" % (a.id, b.id), node_id=a.id, peer_id=b.id)
    v, dt = within(lambda: err(resolve(b, a)))
    check("multi_privacy_revoke_seen_on_2", v, "%.3f s" % dt)

    # a handshake asked on instance 1 reaches b's inbox on instance 2
    r = a.signed("request_handshake", "handshake:%d:%d" % (a.id, b.id), from_node_id=a.id,
                 to_node_id=b.id, justification="across")
    check("multi_request_handshake_on_1", ok(r, "request_handshake"), r)
    t0 = time.monotonic()

    def polled():
        r = b.signed("poll_handshakes", "poll_handshakes:%d" % b.id, node_id=b.id)
        return any(q.get("from_node_id") == a.id for q in r.get("requests", []))
    v, dt = within(polled)
    check("multi_handshake_on_2_within_1s", v, "%.3f s" % dt)
    print("# handshake across instances after %.0f ms" % ((time.monotonic() - t0) * 1000))
    r = b.signed("respond_handshake", "respond:%d:%d" % (b.id, a.id), node_id=b.id, peer_id=a.id,
                 accept=True)
    check("multi_respond_handshake_on_2", ok(r, "respond_handshake"), r)

    # an invite sent on 1 is polled on 2
    r = a.signed("create_network", "create_network:%d:multi-inv" % a.id, node_id=a.id,
                 name="multi-inv", join_rule="invite", admin_token=admin)
    check("multi_create_network_on_1", ok(r, "create_network"), r)
    net = r.get("network_id", 0)
    v, dt = within(lambda: any(n.get("id") == net for n in
                               c2.call({"type": "list_networks"}).get("networks", [])))
    check("multi_network_listed_on_2", v, "%.3f s" % dt)
    r = a.signed("invite_to_network", "invite:%d:%d:%d" % (a.id, net, b.id), inviter_id=a.id,
                 network_id=net, target_node_id=b.id)
    check("multi_invite_on_1", ok(r, "invite_to_network"), r)

    def invited():
        r = b.signed("poll_invites", "poll_invites:%d" % b.id, node_id=b.id)
        return any(i.get("network_id") == net for i in r.get("invites", []))
    v, dt = within(invited)
    check("multi_invite_on_2_within_1s", v, "%.3f s" % dt)
    r = b.signed("respond_invite", "respond_invite:%d:%d" % (b.id, net), node_id=b.id,
                 network_id=net, accept=True)
    check("multi_invite_accepted_on_2", ok(r, "respond_invite"), r)
    v, dt = within(lambda: any(n.get("node_id") == b.id for n in
                               c1.call({"type": "list_nodes", "network_id": net}).get("nodes", [])))
    check("multi_member_listed_on_1", v, "%.3f s" % dt)

    # hostname set on 2 resolves on 1; key rotation on 1 shows on 2; deregistration on 2 on 1
    r = b.signed("set_hostname", "set_hostname:%d" % b.id, node_id=b.id, hostname="multi-b")
    v, dt = within(lambda: c1.call({"type": "resolve_hostname", "hostname": "multi-b"}).get("node_id") == b.id)
    check("multi_hostname_resolves_on_1", v, "%.3f s" % dt)
    from nacl.signing import SigningKey
    import base64
    new = SigningKey.generate()
    newpub = base64.b64encode(bytes(new.verify_key)).decode()
    r = a.signed("rotate_key", "rotate:%d" % a.id, node_id=a.id, new_public_key=newpub)
    check("multi_rotate_on_1", ok(r, "rotate_key"), r)
    v, dt = within(lambda: c2.call({"type": "lookup", "node_id": a.id}).get("public_key") == newpub)
    check("multi_rotated_key_on_2", v, "%.3f s" % dt)
    r = b.signed("deregister", "deregister:%d" % b.id, node_id=b.id)
    check("multi_deregister_on_2", ok(r, "deregister"), r)
    v, dt = within(lambda: err(c1.call({"type": "lookup", "node_id": b.id})))
    check("multi_deregistered_on_1", v, "%.3f s" % dt)
    c1.close()
    c2.close()


def sc_races(p1, p2, rounds, admin):
    """Simultaneous writes of the same thing on both instances."""
    ports = (p1, p2)
    # IDs: both instances register at once; every ID distinct, each key on its own ID everywhere
    nodes = [[], []]
    busy = [0]

    def reg(i):
        c = Conn(ports[i], "127.0.5.%d" % (i + 1))
        for _ in range(8):
            n = Node(c)
            r = retrying(n.register)
            if ok(r, "register"):
                nodes[i].append(n)
    ths = [threading.Thread(target=reg, args=(i,)) for i in (0, 1)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    ids = [n.id for n in nodes[0] + nodes[1]]
    check("race_ids_all_registered", len(ids) == 16, ids)
    check("race_ids_distinct", len(set(ids)) == len(ids), sorted(ids))
    time.sleep(PUSH_S)
    bad = []
    for p in ports:
        c = Conn(p, "127.0.5.9")
        for n in nodes[0] + nodes[1]:
            r = c.call({"type": "lookup", "node_id": n.id})
            if r.get("public_key") != n.pub:
                bad.append((p, n.id, r.get("code")))
        c.close()
    check("race_ids_same_key_on_both", not bad, bad[:5])

    # hostnames: x on 1 and y on 2 claim the same name at the same moment
    cx, cy = Conn(p1, "127.0.5.3"), Conn(p2, "127.0.5.4")
    x, y = Node(cx), Node(cy)
    check("race_setup_registered", ok(retrying(x.register), "register") and ok(retrying(y.register), "register"))
    time.sleep(0.2)
    split = []
    for k in range(rounds):
        name = "race-%d-%d" % (k, int(time.time() * 1000) % 100000)
        go = threading.Barrier(2)
        res = {}

        def claim(n, tag):
            go.wait()
            res[tag] = retrying(lambda: n.signed("set_hostname", "set_hostname:%d" % n.id,
                                                 node_id=n.id, hostname=name))
        ts = [threading.Thread(target=claim, args=(x, "x")), threading.Thread(target=claim, args=(y, "y"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        time.sleep(PUSH_S)
        own = [Conn(p, "127.0.5.8").call({"type": "resolve_hostname", "hostname": name}).get("node_id")
               for p in ports]
        holders = [n.id for n, c in ((x, cx), (y, cy))
                   if Conn(ports[0], "127.0.5.7").call({"type": "lookup", "node_id": n.id}).get("hostname") == name]
        won = [t for t in ("x", "y") if ok(res.get(t, {}), "set_hostname")]
        if not (own[0] == own[1] and own[0] in (x.id, y.id) and len(holders) == 1 and holders[0] == own[0]):
            split.append((name, own, holders, won, res))
    check("race_hostname_exactly_one_owner", not split, split[:2])

    # networks: the same name at once -> one network; different names at once -> distinct IDs
    def create(n, name):
        return retrying(lambda: n.signed("create_network", "create_network:%d:%s" % (n.id, name),
                                         node_id=n.id, name=name, join_rule="open", admin_token=admin))

    def at_once(fa, fb):
        go = threading.Barrier(2)
        res = [None, None]

        def run(i, f):
            go.wait()
            res[i] = f()
        ts = [threading.Thread(target=run, args=(0, fa)), threading.Thread(target=run, args=(1, fb))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return res
    tag = int(time.time() * 1000) % 100000
    same = "race-net-%d" % tag
    r = at_once(lambda: create(x, same), lambda: create(y, same))
    oks = [q for q in r if ok(q, "create_network")]
    time.sleep(PUSH_S)
    lists = [[n["id"] for n in Conn(p, "127.0.5.6").call({"type": "list_networks"}).get("networks", [])
              if n.get("name") == same] for p in ports]
    check("race_network_same_name_one", len(oks) == 1 and lists[0] == lists[1] and len(lists[0]) == 1
          and lists[0][0] == oks[0].get("network_id"), (r, lists))
    r = at_once(lambda: create(x, "race-a-%d" % tag), lambda: create(y, "race-b-%d" % tag))
    ids = [q.get("network_id") for q in r]
    check("race_network_ids_distinct", all(ok(q, "create_network") for q in r) and ids[0] != ids[1], r)
    time.sleep(PUSH_S)
    lists = [sorted((n["id"], n["name"]) for n in Conn(p, "127.0.5.6").call({"type": "list_networks"}).get("networks", []))
             for p in ports]
    check("race_networks_same_on_both", lists[0] == lists[1], lists)
    cx.close()
    cy.close()


def sc_notify(p1, p2, b2):
    """b is attached to instance 2's beacon (a Discover from the IP it registered
    from proves it); a handshake request made on instance 1 makes that beacon send
    b a Notify (0A 01) within 1 s, through the change feed."""
    import socket
    import struct
    c1, c2 = Conn(p1, "127.0.4.11"), Conn(p2, "127.0.4.12")
    a, b = Node(c1), Node(c2)
    check("notify_setup_registered", ok(retrying(a.register), "register") and ok(retrying(b.register), "register"))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.4.12", 0))
    u.settimeout(0.2)
    got_reply = False
    for _ in range(10):
        u.sendto(b"\x01" + struct.pack(">I", b.id), ("127.0.0.1", b2))
        try:
            d, _ = u.recvfrom(2048)
            got_reply = d[:1] == b"\x02"
            break
        except socket.timeout:
            pass
    check("notify_discover_answered", got_reply)
    within(lambda: ok(c1.call({"type": "lookup", "node_id": b.id}), "lookup"))
    r = a.signed("request_handshake", "handshake:%d:%d" % (a.id, b.id), from_node_id=a.id,
                 to_node_id=b.id, justification="notify me")
    check("notify_request_on_1", ok(r, "request_handshake"), r)
    t0 = time.monotonic()
    got = None
    u.settimeout(0.1)
    while time.monotonic() - t0 < 2.0 and got is None:
        try:
            d, _ = u.recvfrom(2048)
            if d[:2] == b"\x0a\x01":
                got = time.monotonic() - t0
        except socket.timeout:
            pass
    check("notify_pushed_by_other_instance_within_1s", got is not None and got <= PUSH_S,
          "after %s s" % ("%.3f" % got if got is not None else "never"))
    if got is not None:
        print("# Notify from the other instance's beacon %.0f ms after the request" % (got * 1000))
    u.close()
    c1.close()
    c2.close()


def sc_failover(p1, p2, n, acked_path):
    """n nodes on instance 1 with heartbeats; after it was killed (by the caller)
    they re-register with instance 2 by key: same ID, within 10 s."""
    with open(acked_path) as f:
        saved = [line.split() for line in f if line.strip()]
    from nacl.signing import SigningKey
    import base64
    t0 = time.monotonic()
    bad = []
    for i, (nid, seed) in enumerate(saved):
        if i % 8 == 0:
            c = Conn(p2, "127.0.6.%d" % (i // 8 + 20))
        key = SigningKey(bytes.fromhex(seed))
        node = Node(c)
        node.key = key
        node.pub = base64.b64encode(bytes(key.verify_key)).decode()
        r = retrying(node.register)
        if not ok(r, "register") or r.get("node_id") != int(nid):
            bad.append((nid, r))
        else:
            node.signed("heartbeat", "heartbeat:%d" % node.id, node_id=node.id)
    dt = time.monotonic() - t0
    check("failover_nodes_keep_ids_on_2", len(saved) == n and not bad, bad[:3])
    check("failover_all_served_within_10s", dt < 10, "%.1f s" % dt)
    print("# %d nodes re-registered on the surviving instance in %.2f s" % (len(saved), dt))


def sc_nodes_on(p, n, out):
    """n nodes register and heartbeat on p; id and key seed go to out as acked."""
    with open(out, "w") as f:
        for i in range(n):
            if i % 8 == 0:  # 10 registrations per source stay under the rate limit
                c = Conn(p, "127.0.6.%d" % (i // 8 + 2))
            node = Node(c)
            r = retrying(node.register)
            if ok(r, "register"):
                node.signed("heartbeat", "heartbeat:%d" % node.id, node_id=node.id)
                f.write("%d %s\n" % (node.id, bytes(node.key).hex()))
                f.flush()


def sc_replay(p1, p2):
    """A v2-signed write accepted by one instance is refused when replayed to
    the other within the signature window: the signature travels with the
    write (sig_seen, unique key, same transaction; change feed to the other
    instance's replay cache). Without it, a captured older set_hostname
    replayed to instance 2 rolled the hostname back."""
    c1, c2 = Conn(p1, "127.0.8.1"), Conn(p2, "127.0.8.2")
    a = Node(c1)
    check("replay_setup_registered", ok(retrying(a.register), "register"))
    known, _ = within(lambda: ok(c2.call({"type": "lookup", "node_id": a.id}), "lookup"))
    check("replay_setup_known_on_2", known)

    def hostname_req(name):
        sig, ts = a.sig2("set_hostname", "%d:%s" % (a.id, name))
        return {"type": "set_hostname", "node_id": a.id, "hostname": name, "signature": sig, "sig_ts": ts}

    old = hostname_req("rp-old-%d" % a.id)
    r = c1.call(old)
    check("replay_first_write_on_1", ok(r, "set_hostname"), r)
    r = c1.call(hostname_req("rp-new-%d" % a.id))
    check("replay_second_write_on_1", ok(r, "set_hostname"), r)
    r = c2.call(old)  # the captured first request, to the other instance
    check("replay_to_other_instance_refused", err(r) and r.get("code") in ("replayed_signature", "busy"), r)
    time.sleep(1.0)
    names = [x.call({"type": "lookup", "node_id": a.id}).get("hostname") for x in (c1, c2)]
    check("replay_hostname_not_rolled_back", names == ["rp-new-%d" % a.id] * 2, names)
    r = c2.call(old)
    check("replay_again_refused_replayed_signature", r.get("code") == "replayed_signature", r)
    # the same signed write sent to both at once: at most one acknowledged
    twice = hostname_req("rp-both-%d" % a.id)
    res = [None, None]

    def send(i, c):
        res[i] = c.call(twice)

    th = [threading.Thread(target=send, args=(i, c)) for i, c in enumerate((c1, c2))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    n_ok = sum(1 for x in res if ok(x, "set_hostname"))
    check("replay_simultaneous_at_most_one_acked", n_ok <= 1, res)
    c1.close()
    c2.close()


def sc_ratelimit(p1, p2):
    """One source's register budget (10, then 10/min) is one across the
    instances: spent on instance 1, it is spent on instance 2 as soon as the
    change feed brings it (each instance sends what it charged every second).
    Another source is not affected."""
    c1 = Conn(p1, "127.0.9.1")
    got = [retrying(Node(c1).register) for _ in range(10)]
    check("multi_rl_budget_used_on_1", all(ok(r, "register") for r in got), got[-1])
    r = Node(c1).register()
    check("multi_rl_budget_gone_on_1", r.get("code") == "rate_limited", r)
    # one try only: every try on instance 2 would spend its own budget too
    time.sleep(2.5)
    r = Node(Conn(p2, "127.0.9.1")).register()
    check("multi_rl_budget_shared_on_2", r.get("code") == "rate_limited", r)
    r = retrying(Node(Conn(p2, "127.0.9.2")).register)
    check("multi_rl_other_source_unaffected", ok(r, "register"), r)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {
        "cross": lambda: sc_cross(int(args[0]), int(args[1]), args[2]),
        "races": lambda: sc_races(int(args[0]), int(args[1]), int(args[2]), args[3]),
        "notify": lambda: sc_notify(int(args[0]), int(args[1]), int(args[2])),
        "replay": lambda: sc_replay(int(args[0]), int(args[1])),
        "ratelimit": lambda: sc_ratelimit(int(args[0]), int(args[1])),
        "nodes_on": lambda: sc_nodes_on(int(args[0]), int(args[1]), args[2]),
        "failover": lambda: sc_failover(int(args[0]), int(args[1]), int(args[2]), args[3]),
    }[cmd]
    regclient.run_scenario(cmd, fn)


if __name__ == "__main__":
    main()
