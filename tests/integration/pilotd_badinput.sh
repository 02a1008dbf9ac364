#!/bin/bash
# pilotd under bad input: random and malformed datagrams at the tunnel port,
# malformed control-socket frames and arguments — counted or refused, and the
# daemon still answers; start-up refusals (no -registry: exit 2; a second
# instance on the same socket; a corrupt identity file); and a short scenario
# under valgrind (release binary, --leak-check=full --error-exitcode=99).
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
TOOL=tests/integration/pilotd_tool.py
REL=$BUILD/rel/bin/pilotd

pd_init badin

# ---- start-up refusals (no namespaces needed) ----
out=$("$PD_BIN" -identity= -socket "$PT_DIR/x.sock" 2>&1)
rc=$?
pt_check no_registry_exit_2 [ $rc = 2 ]
pt_check no_registry_message bash -c "echo '$out' | grep -q 'no registry configured: pass -registry HOST:PORT'"
echo '{"private_key": "AAAA", "public_key": "BBBB"}' >"$PT_DIR/bad-identity.json"
out=$("$PD_BIN" -registry 127.0.0.1:1 -identity "$PT_DIR/bad-identity.json" -socket "$PT_DIR/y.sock" 2>&1)
rc=$?
pt_check corrupt_identity_fatal bash -c "[ $rc != 0 ] && echo '$out' | grep -q bad-identity.json"
pt_check check_config_ok "$PD_BIN" -n -identity= -registry 127.0.0.1:9000
pt_check check_config_bad_kdf bash -c "! $PD_BIN -n -identity= -registry 127.0.0.1:9000 -kdf foo 2>/dev/null"

pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a && pd_start b b || { pt_fail nodes_registered; exit 1; }
pt_check trust_pair pd_trust_pair a b

out=$(pt_exec "$PT-a" "$PD_BIN" -identity= -registry "$PD_REGISTRY" -socket "$PT_DIR/a/ctl.sock" 2>&1)
rc=$?
pt_check second_instance_refused bash -c "[ $rc != 0 ] && echo '$out' | grep -q 'another pilotd is running'"
pt_check first_instance_still_answers pd_registered a

# ---- junk at the tunnel port ----
port=$(pd_ctl a info | pd_json "d['listen_addr'].rsplit(':', 1)[1]")
drops() {
	pd_ctl a info | pd_json "sum(v for k, v in d['counters'].items() if k.startswith('tunnel_drop_'))"
}
d0=$(drops)
pt_exec "$PT-b" python3 "$TOOL" junk 198.18.0.10 "$port" 2000 7
pt_exec "$PT-b" python3 "$TOOL" forge 198.18.0.10 "$port" "${PD_ID[b]}" 200
d1=$(drops)
if [ "${d1:-0}" -gt "${d0:-0}" ]; then pt_pass "junk_datagrams_counted_$((d1 - d0))"; else pt_fail junk_datagrams_counted "$d0 -> $d1"; fi
pt_check daemon_alive_after_junk kill -0 "${PD_PID[a]}"
pt_check info_after_junk pd_registered a
pt_check ping_after_junk pd_wait 10 pd_ping_ok b a

# ---- malformed control frames and arguments ----
pt_check ctl_malformed_refused_daemon_answers python3 "$TOOL" ctl "$PT_DIR/a/ctl.sock"
pt_check ctl_bad_frames_counted \
	bash -c "$PD_CTL --json --socket $PT_DIR/a/ctl.sock info | grep -q '\"ctl_bad_frames\":[1-9]'"
pt_check ping_after_ctl_abuse pd_ping_ok a b

# ---- valgrind over a short scenario (release build) ----
pd_stop a
if [ -x "$REL" ] && command -v valgrind >/dev/null; then
	pt_spawn a "$PT_DIR/valgrind.log" valgrind --leak-check=full --error-exitcode=99 \
		--errors-for-leak-kinds=definite,indirect "$REL" -registry "$PD_REGISTRY" -beacon "$PD_BEACON" \
		-identity "$PT_DIR/a/identity.json" -socket "$PT_DIR/a/ctl.sock" -log-level debug
	VG=$PT_PID
	PD_PID[a]=$VG
	if pd_wait 60 pd_registered a; then
		pd_wait 20 pd_ping_ok b a
		pd_ctl a connect "${PD_ID[b]}" 7 --message valgrind --timeout 10s >/dev/null
		pd_ctl a peers >/dev/null
		pd_ctl a pending >/dev/null
		pt_exec "$PT-b" python3 "$TOOL" junk 198.18.0.10 "$port" 200 9
		python3 "$TOOL" ctl "$PT_DIR/a/ctl.sock" >/dev/null
		pd_ctl a rotate-key >/dev/null
		pd_ctl a ping no-such-host --count 1 >/dev/null
		pd_ctl a untrust "${PD_ID[b]}" >/dev/null
		sleep 1 # the deferred tunnel forget runs under valgrind too
		kill -TERM "$VG"
		for _ in $(seq 300); do kill -0 "$VG" 2>/dev/null || break; sleep 0.1; done
		wait "$VG"
		rc=$?
		if [ $rc = 0 ]; then pt_pass valgrind_clean; else pt_fail valgrind_clean "rc $rc, see valgrind.log"; tail -n 40 "$PT_DIR/valgrind.log"; fi
	else
		pt_fail valgrind_registered
	fi
else
	echo "valgrind or $REL missing: valgrind run skipped"
fi
pd_stop b
exit 0
