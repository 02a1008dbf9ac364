#!/usr/bin/env python3
# A timeline of the IPv4 packets on every interface of the current network
# namespace (AF_PACKET, the kernel's receive timestamps), one line each: time,
# interface, packet type (0 host, 4 outgoing), TCP flags / UDP payload head.
# For tracing a path by hand (scripts/bench-ab ttfb with TRACE=DIR); not a test.
#   pktlog.py OUT SECS          (as root, inside the namespace; stops after SECS)
import socket, struct, sys, time, select
ETH_P_ALL = 3
SO_TIMESTAMPNS = 35
out, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
f = open(out, "w")  # exists once capturing: the caller may wait for it
end = time.time() + secs
while time.time() < end:
    r, _, _ = select.select([s], [], [], 0.2)
    if not r:
        continue
    data, anc, flags, addr = s.recvmsg(65536, 1024)
    ts = 0.0
    for lvl, typ, d in anc:
        if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, ns = struct.unpack("qq", d[:16]); ts = sec + ns / 1e9
    ifname, pkttype = addr[0], addr[2]
    hatype = addr[3]
    ip = data
    if hatype in (1, 772):  # ethernet, loopback
        if len(data) < 14: continue
        et = struct.unpack("!H", data[12:14])[0]
        if et != 0x0800: continue
        ip = data[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4: continue
    ihl = (ip[0] & 15) * 4; proto = ip[9]
    src = socket.inet_ntoa(ip[12:16]); dst = socket.inet_ntoa(ip[16:20])
    l4 = ip[ihl:]
    desc = ""
    if proto == 6 and len(l4) >= 20:
        sp, dp, seq, ack, off = struct.unpack("!HHIIB", l4[:13]); fl = l4[13]
        plen = len(l4) - (off >> 4) * 4
        fs = "".join(c for b, c in ((2, "S"), (16, "A"), (8, "P"), (1, "F"), (4, "R")) if fl & b)
        desc = "tcp %s:%d>%s:%d %s len=%d" % (src, sp, dst, dp, fs, plen)
        if plen: desc += " %r" % bytes(l4[(off >> 4) * 4:][:40])
    elif proto == 17 and len(l4) >= 8:
        sp, dp, ul = struct.unpack("!HHH", l4[:6]); pl = l4[8:]
        desc = "udp %s:%d>%s:%d len=%d %r" % (src, sp, dst, dp, len(pl), bytes(pl[:4]))
    elif proto == 1:
        desc = "icmp %s>%s type=%d" % (src, dst, l4[0] if l4 else -1)
    else:
        continue
    f.write("%.6f %s %d %s\n" % (ts, ifname, pkttype, desc)); f.flush()
