#!/bin/bash
# pilotd verbs and lifecycle the other tests do not reach, in namespaces on one
# bridge: control socket mode 0600 and `daemon status --check`; set-public opens
# a private node to an untrusted peer and set-private closes it again; find and
# clear-hostname; set-tags / clear-tags as the registry shows them; network
# create, join, list, members and leave; SIGHUP reopens -log-file;
# -deregister-on-exit removes the node from the registry on SIGTERM; a stale
# control socket is replaced at start-up.
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init verbs

pt_bridge net
pt_ns rdv
pt_attach rdv net 198.18.0.1/24
i=10
for n in a b c; do
	pt_ns "$n"
	pt_attach "$n" net "198.18.0.$i/24"
	i=$((i + 1))
done
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

for n in a b; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
exit 0
