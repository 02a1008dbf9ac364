#!/usr/bin/python3
"""Registry store scenarios for tests/integration/rendezvous_store.sh (issue 21):
the store on a deliberately slow disk (-store-fsync-delay), group commit, and the
busy back-pressure. Uses the wire client of regclient.py. Loopback only; each
scenario binds its own 127.x source addresses; every loop is bounded."""
import select
import sys
import time
import urllib.request

import regclient
from regclient import Conn, Node, check, ok


def metric(http_port, name):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def pending(conn):
    """True if the server has sent something on conn (not read yet)."""
    return bool(select.select([conn.s], [], [], 0)[0])


def sc_slowdisk(port, http_port, delay_ms, idfile):
    delay = delay_ms / 1000.0
    acked = []
    c1 = Conn(port, "127.0.4.1", timeout=30)
    a = Node(c1)
    t0 = time.monotonic()
    r = a.register()
    dt = time.monotonic() - t0
    check("slow_register_ok", ok(r, "register"), r)
    check("register_acked_only_after_commit", dt >= 0.9 * delay, "acked after %.3f s, fsync %.3f s" % (dt, delay))
    acked.append(a.id)

    # Pipelined on one connection: a write then a read. Meanwhile another client
    # reads 100 times. Up to 3 rounds: the machine is shared, and one scheduling
    # hiccup of this client is not the registry waiting for its disk (that would
    # be >= the fsync time); no lookup may ever take half the fsync time.
    c2 = Conn(port, "127.0.4.2", timeout=5)
    c2.call({"type": "lookup", "node_id": a.id})  # connected and warm
    rounds = []
    for rnd in range(3):
        b = Node(c1)
        t0 = time.monotonic()
        c1.send({"type": "register", "public_key": b.pub, "listen_addr": "0.0.0.0:4000"})
        c1.send({"type": "lookup", "node_id": a.id})
        worst, bad = 0.0, []
        for _ in range(100):
            t = time.monotonic()
            r = c2.call({"type": "lookup", "node_id": a.id})
            worst = max(worst, time.monotonic() - t)
            if not ok(r, "lookup"):
                bad.append(r)
        lookups_done = time.monotonic() - t0
        reply_early = pending(c1)
        r1 = c1.recv()
        t_r1 = time.monotonic() - t0
        r2 = c1.recv()
        if ok(r1, "register"):
            acked.append(r1["node_id"])
        rounds.append((worst, bad, lookups_done, reply_early, r1, t_r1, r2))
        print("# round %d: worst lookup %.1f ms, 100 lookups in %.3f s, register acked after %.3f s"
              % (rnd + 1, worst * 1000, lookups_done, t_r1), flush=True)
        if not bad and worst < 0.05:
            break
    check("lookups_answered_under_50ms_while_fsync_takes_%dms" % delay_ms,
          any(not x[1] and x[0] < 0.05 for x in rounds)
          and all(not x[1] and x[0] < delay / 2 for x in rounds),
          "worst per round %s ms" % [round(x[0] * 1000, 1) for x in rounds])
    worst, bad, lookups_done, reply_early, r1, t_r1, r2 = rounds[-1]
    check("lookups_served_while_commit_in_flight", not reply_early and lookups_done < 0.9 * delay,
          "100 lookups took %.3f s; register reply already there: %s" % (lookups_done, reply_early))
    check("pipelined_register_acked_after_commit",
          all(ok(x[4], "register") and x[5] >= 0.9 * delay for x in rounds),
          [(x[4].get("type"), round(x[5], 3)) for x in rounds])
    check("later_reply_on_same_connection_keeps_order",
          all(ok(x[6], "lookup") and x[6].get("node_id") == a.id for x in rounds), r2)

    # Group commit: 40 clients register at once; one fsync per write would take
    # 40 x delay, batches take a few.
    conns = [Conn(port, "127.0.5.%d" % (i + 1), timeout=30) for i in range(40)]
    nodes = [Node(c) for c in conns]
    t0 = time.monotonic()
    for n in nodes:
        n.conn.send({"type": "register", "public_key": n.pub, "listen_addr": "0.0.0.0:4000"})
    replies = [n.conn.recv() for n in nodes]
    dt = time.monotonic() - t0
    good = [r for r in replies if ok(r, "register")]
    acked += [r["node_id"] for r in good]
    check("burst_of_40_registers_all_acked", len(good) == 40, [r for r in replies if not ok(r, "register")][:3])
    check("burst_shares_fsyncs", dt < 8 * delay, "40 registers took %.2f s with %.1f s per fsync" % (dt, delay))
    bmax = metric(http_port, "pilot_store_batch_size_max")
    check("metrics_batch_size_shows_group_commit", bmax is not None and bmax >= 5, "batch max %s" % bmax)
    check("metrics_commit_latency_histogram",
          (metric(http_port, "pilot_store_commit_seconds_count") or 0) >= 3
          and (metric(http_port, "pilot_store_commit_max_seconds") or 0) >= 0.9 * delay)
    check("metrics_queue_depth_present", metric(http_port, "pilot_store_queue_depth") is not None)
    with open(idfile, "w") as f:
        f.write("".join("%d\n" % i for i in acked))


def sc_busy(port, http_port, n):
    conns = [Conn(port, "127.0.6.%d" % (i + 1), timeout=30) for i in range(n)]
    nodes = [Node(c) for c in conns]
    sent = {}
    for nd in nodes:
        sent[nd] = time.monotonic()
        nd.conn.send({"type": "register", "public_key": nd.pub, "listen_addr": "0.0.0.0:4000"})
    busy, good, other, busy_lat = [], [], [], []
    waiting = {nd.conn.s: nd for nd in nodes}
    deadline = time.monotonic() + 30
    while waiting and time.monotonic() < deadline:
        for s in select.select(list(waiting), [], [], 1.0)[0]:
            nd = waiting.pop(s)
            r = nd.conn.recv()
            lat = time.monotonic() - sent[nd]
            if ok(r, "register"):
                good.append(nd)
            elif r.get("code") == "busy":
                busy.append((nd, r))
                busy_lat.append(lat)
            else:
                other.append(r)
    other += ["no reply"] * len(waiting)
    check("busy_some_writes_refused_when_queue_full", busy and good and not other,
          "%d ok, %d busy, other %s" % (len(good), len(busy), other[:2]))
    hint = [r.get("retry_after_ms") for _, r in busy]
    check("busy_reply_has_retry_hint", busy and all(isinstance(h, int) and 0 < h <= 2000 for h in hint)
          and all(r.get("error") == "request failed" for _, r in busy), hint[:5])
    check("busy_answered_at_once_not_timed_out", busy_lat and max(busy_lat) < 0.3,
          "slowest busy reply %.3f s" % (max(busy_lat) if busy_lat else -1))
    # Honour the hint (with jitter, like pilotd) until every node is registered.
    left = [nd for nd, _ in busy]
    deadline = time.monotonic() + 30
    while left and time.monotonic() < deadline:
        nxt = []
        for nd in left:
            r = nd.register()
            if not ok(r, "register"):
                nxt.append(nd)
                time.sleep(min(r.get("retry_after_ms", 100), 2000) / 1000.0 * 1.2)
        left = nxt
    check("busy_then_retry_succeeds", not left, "%d still refused" % len(left))
    check("metrics_busy_counted", (metric(http_port, "pilot_store_busy_total") or 0) >= len(busy))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {
        "slowdisk": lambda: sc_slowdisk(int(args[0]), int(args[1]), int(args[2]), args[3]),
        "busy": lambda: sc_busy(int(args[0]), int(args[1]), int(args[2])),
    }[cmd]
    regclient.run_scenario(cmd, fn)


if __name__ == "__main__":
    main()
