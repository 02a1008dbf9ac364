#!/bin/bash
# pilotd verbs and lifecycle the other tests do not reach, in namespaces on one
# bridge: control socket mode 0600 and `daemon status --check`; set-public opens
# a private node to an untrusted peer and set-private closes it again; find and
# clear-hostname; set-tags / clear-tags as the registry shows them; network
# create, join, list, members and leave; SIGHUP reopens -log-file;
# -deregister-on-exit removes the node from the registry on SIGTERM; a stale
# control socket is replaced at start-up; a node the registry forgot (deregistered
# behind its back) registers again after 3 failed heartbeats and restores its
# hostname and visibility under the same node ID; -user drops root once the
# sockets are open and the node still works (trust.json written as that user);
# SIGTERM closes open connections (a peer's subscription ends at once).
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init verbs

pd_lan a b c d e || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
mkdir -p "$PT_DIR/c"
ok=1
pd_start a a || ok=0
pd_start b b || ok=0
pd_start c c -log-file "$PT_DIR/c/pilotd.log" -deregister-on-exit || ok=0
if [ $ok = 1 ]; then pt_pass three_nodes_registered; else pt_fail three_nodes_registered; exit 1; fi

eq() { # NAME GOT WANT
	if [ -n "$2" ] && [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2' want '$3'"; fi
}
not() { ! "$@"; }
echo_ok() { # A reaches B's echo port with a stream
	pd_ctl "$1" connect "${PD_ID[$2]}" 7 --message "hello-$1" --timeout 3s \
		| pd_json "d['response'] == 'hello-$1'" >/dev/null
}
status_check() { "$PD_CTL" --socket "$PT_DIR/$1/ctl.sock" daemon status --check >/dev/null 2>&1; }

# ---- control socket ----
eq ctl_socket_mode_0600 "$(stat -c %a "$PT_DIR/a/ctl.sock")" 600
pt_check daemon_status_check status_check a

# ---- set-public / set-private drive the admission rule ----
pt_check private_refuses_untrusted not echo_ok b a
eq set_public_reply "$(pd_ctl a set-public | pd_json 'd.get("visibility")')" public
pt_check public_admits_untrusted pd_wait 10 echo_ok b a
eq set_private_reply "$(pd_ctl a set-private | pd_json 'd.get("visibility")')" private
pt_check private_again_refuses not echo_ok b a
eq lookup_shows_private "$(pd_ctl b lookup "${PD_ID[a]}" | pd_json 'str(d["public"])')" False

# ---- hostname: find, clear ----
pd_ctl a set-public >/dev/null
pd_ctl a set-hostname verbs-a >/dev/null
eq find_hostname "$(pd_ctl b find verbs-a | pd_json 'd["node_id"]')" "${PD_ID[a]}"
pd_ctl a clear-hostname >/dev/null
pt_check clear_hostname_find_fails bash -c "$PD_CTL --json --socket $PT_DIR/b/ctl.sock find verbs-a 2>&1 | grep -q not_found"
pd_ctl a set-private >/dev/null

# ---- tags ----
pd_ctl a set-tags web db >/dev/null
eq set_tags_lookup "$(pd_ctl b lookup "${PD_ID[a]}" | pd_json '",".join(sorted(d.get("tags", [])))')" db,web
pd_ctl a clear-tags >/dev/null
eq clear_tags_lookup "$(pd_ctl b lookup "${PD_ID[a]}" | pd_json 'str(len(d.get("tags", [])))')" 0

# ---- networks ----
net=$(pd_ctl a network create "verbs-$$" | pd_json 'd.get("network_id") or d.get("id")')
pt_check network_create [ -n "$net" ]
pt_check network_join bash -c "$PD_CTL --json --socket $PT_DIR/b/ctl.sock network join $net | grep -q '\"ok\"'"
pt_check network_list bash -c "$PD_CTL --json --socket $PT_DIR/b/ctl.sock network list | grep -q 'verbs-$$'"
members() { pd_ctl "$1" network members "$net" | pd_json "sorted(int(m.get('node_id', 0)) for m in d.get('nodes', d.get('members', [])))"; }
eq network_members "$(members a)" "$(python3 -c "print(sorted([${PD_ID[a]}, ${PD_ID[b]}]))")"
pt_check network_leave bash -c "$PD_CTL --json --socket $PT_DIR/b/ctl.sock network leave $net | grep -q '\"ok\"'"
eq network_members_after_leave "$(members a)" "[${PD_ID[a]}]"

# ---- SIGHUP reopens -log-file ----
mv "$PT_DIR/c/pilotd.log" "$PT_DIR/c/pilotd.log.1"
kill -HUP "${PD_PID[c]}"
pt_check sighup_reopens_log pd_wait 5 grep -q "log file reopened" "$PT_DIR/c/pilotd.log"
pt_check sighup_still_running status_check c

# ---- -deregister-on-exit ----
pd_stop c
eq deregister_on_exit_rc "$?" 0
pt_check deregistered_at_registry pd_wait 5 bash -c "$PD_CTL --json --socket $PT_DIR/a/ctl.sock lookup ${PD_ID[c]} 2>&1 | grep -q 'not registered'"
pt_check daemon_status_check_stopped not status_check c
pt_check socket_removed_on_exit [ ! -e "$PT_DIR/c/ctl.sock" ]
# a stale socket (nobody listening) is replaced at start-up
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$PT_DIR/c/ctl.sock"
pt_check stale_socket_present [ -S "$PT_DIR/c/ctl.sock" ]
pt_check start_over_stale_socket pd_start c c
pt_check stale_socket_answers status_check c
pd_stop c

# ---- re-registration after heartbeat failures restores hostname and visibility ----
pd_start d d -keepalive 2s || pt_fail reregister_node_registered
pd_ctl d set-hostname verbs-d >/dev/null
pd_ctl d set-public >/dev/null
# deregister d at the registry behind its back, signed with its own key (v2;
# /usr/bin/python3 has python3-nacl, as in rendezvous.sh)
pt_exec "$PT-d" /usr/bin/python3 - "$PT_DIR/d/identity.json" "${PD_ID[d]}" "${PD_REGISTRY%:*}" <<'PY'
import base64, json, socket, struct, sys, time
from nacl.signing import SigningKey
ident, node, host = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
key = SigningKey(base64.b64decode(ident["private_key"])[:32])
ts = int(time.time())
sig = base64.b64encode(key.sign(("pilot2:deregister:%d:%d" % (ts, node)).encode()).signature).decode()
body = json.dumps({"type": "deregister", "node_id": node, "sig_ts": ts, "signature": sig}).encode()
s = socket.create_connection((host, 9000), timeout=5)
s.sendall(struct.pack(">I", len(body)) + body)
n = struct.unpack(">I", s.recv(4))[0]
print(s.recv(n).decode())
PY
lookup_d() { pd_ctl a lookup "${PD_ID[d]}"; }
pt_check reregister_gone_at_registry bash -c "$PD_CTL --json --socket $PT_DIR/a/ctl.sock lookup ${PD_ID[d]} 2>&1 | grep -q 'not registered'"
restored() { lookup_d | pd_json "d.get('hostname') == 'verbs-d' and d.get('public') is True" >/dev/null; }
pt_check reregister_restores_hostname_visibility pd_wait 30 restored
eq reregister_same_node_id "$(lookup_d | pd_json 'd["node_id"]')" "${PD_ID[d]}"
pt_check reregister_logged grep -q "heartbeats failed in a row; registering again" "$PT_DIR/d.log"

# ---- -user: privileges dropped after the sockets are open ----
# The control socket's directory must stay root's; the identity's directory (and
# trust.json in it) belongs to the user.
mkdir -p "$PT_DIR/e" "$PT_DIR/e-id"
chmod 711 "$PT_DIR"
chown nobody "$PT_DIR/e-id"
pt_spawn e "$PT_DIR/e.log" "$PD_BIN" -registry "$PD_REGISTRY" -beacon "$PD_BEACON" \
	-identity "$PT_DIR/e-id/identity.json" -socket "$PT_DIR/e/ctl.sock" -log-level debug -user nobody
PD_PID[e]=$PT_PID
if pd_wait 15 pd_registered e; then
	pt_pass user_node_registered
	PD_ID[e]=$(pd_ctl e info | pd_json 'd["node_id"]')
	eq user_uid_dropped "$(awk '/^Uid:/ { print $2 $3 $4 $5 }' "/proc/${PD_PID[e]}/status")" 65534655346553465534
	pt_check user_trust_pair pd_trust_pair e a
	pt_check user_ping pd_ping_ok a e
	eq user_trust_file_owner "$(stat -c %U "$PT_DIR/e-id/trust.json" 2>/dev/null)" nobody
	# ---- SIGTERM closes open connections: a's subscription to e ends at once ----
	pd_ctl a subscribe "${PD_ID[e]}" news --timeout 60s >"$PT_DIR/sub.out" 2>&1 &
	spid=$!
	sub_open() { pd_ctl e connections | pd_json "any(c['local_port'] == 1002 for c in d['connections'])" >/dev/null; }
	if pd_wait 10 sub_open; then
		t0=$SECONDS
		pd_stop e
		eq sigterm_exit_0_e "$?" 0
		for _ in $(seq 100); do kill -0 $spid 2>/dev/null || break; sleep 0.1; done
		if kill -0 $spid 2>/dev/null; then
			pt_fail sigterm_closes_connections "subscription still open $((SECONDS - t0))s after SIGTERM"
			kill $spid
		else
			echo "subscription ended $((SECONDS - t0))s after SIGTERM: $(head -c 200 "$PT_DIR/sub.out")"
			pt_pass sigterm_closes_connections
		fi
		wait $spid 2>/dev/null
	else
		pt_fail sigterm_subscription_open
		kill $spid 2>/dev/null
	fi
else
	pt_fail user_node_registered "$(tail -n 5 "$PT_DIR/e.log")"
fi

for n in a b d; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
exit 0
