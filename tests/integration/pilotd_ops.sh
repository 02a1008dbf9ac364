#!/bin/bash
# Operating pilotd (issue 19): the -metrics endpoint after a real transfer
# (the bytes show on the right peer; the body parses with Python's
# prometheus_client, the reference text-format parser), loopback-only by
# default and off when not configured; sd_notify READY=1 only once registered
# (a NOTIFY_SOCKET we listen on, as systemd's Type=notify would); pilotctl
# status; the bash completion completing verbs and the peers the daemon knows.
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init ops
# Debian's python3 (python3-prometheus-client), not a pyenv or venv one.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }

# ---- sd_notify: READY=1 once registered, never before ----
notify_listener() { # NS SOCKET LOG
	pt_spawn "$1" "$3" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    print(s.recv(4096).decode().replace("\n", "|"), flush=True)
' "$2"
	pt_wait 50 test -S "$2"
}
notify_listener a "$PT_DIR/notify-a.sock" "$PT_DIR/notify-a.log"
notify_listener rdv "$PT_DIR/notify-x.sock" "$PT_DIR/notify-x.log"
export NOTIFY_SOCKET=$PT_DIR/notify-a.sock
pd_start a a -tun=off -metrics :9102 || { pt_fail node_a_started; exit 1; }
unset NOTIFY_SOCKET
pd_start b b -tun=off -metrics 127.0.0.1:9102 || { pt_fail node_b_started; exit 1; }
B=${PD_ID[b]}
pt_check sd_notify_ready_when_registered pd_wait 5 grep -qx 'READY=1|STATUS=registered' "$PT_DIR/notify-a.log"
# A node whose registry does not answer (nothing listens on :9999) is not ready,
# and without -metrics it serves none.
pt_spawn rdv "$PT_DIR/x.log" env NOTIFY_SOCKET="$PT_DIR/notify-x.sock" "$PD_BIN" -registry 198.18.0.1:9999 \
	-tun=off -identity= -socket "$PT_DIR/x.sock"
XPID=$PT_PID
sleep 3
pt_check sd_notify_not_ready_unregistered bash -c "kill -0 $XPID && ! grep -q READY $PT_DIR/notify-x.log"
nothing_on_9102() { ! pt_exec "$PT-rdv" curl -s -m 2 -o /dev/null http://127.0.0.1:9102/metrics; }
pt_check metrics_off_by_default nothing_on_9102
pt_stop "$XPID"

# ---- metrics: a bare :port is loopback only ----
pt_check metrics_bare_port_is_loopback grep -q 'metrics listening addr=127.0.0.1:9102' "$PT_DIR/a.log"
not_on_underlay() { ! pt_exec "$PT-b" curl -s -m 2 -o /dev/null http://198.18.0.10:9102/metrics; }
pt_check metrics_not_on_underlay not_on_underlay

# ---- a trust request waiting shows in status with the command that answers it ----
pd_ctl b handshake "${PD_ID[a]}" "ops test" >/dev/null
pending_shown() {
	PILOT_SOCKET=$PT_DIR/a/ctl.sock "$PD_CTL" status >"$PT_DIR/status-pending.txt" 2>&1
	grep -q "^trust requests waiting: 1" "$PT_DIR/status-pending.txt" \
		&& grep -q "pilotctl approve $B " "$PT_DIR/status-pending.txt"
}
pt_check ctl_status_trust_request_waiting pd_wait 15 pending_shown
cat "$PT_DIR/status-pending.txt"

# ---- a transfer, then a scrape on each side ----
pd_trust_pair a b || { pt_fail trusted; exit 1; }
head -c 1048576 /dev/urandom >"$PT_DIR/mb.bin"
r=$(pd_ctl a send-file "$B" "$PT_DIR/mb.bin" --timeout 60s)
echo "$r" | pd_json 'd' >/dev/null && pt_pass send_file_1mib || pt_fail send_file_1mib "$r"

scrape() { pt_exec "$PT-$1" curl -s -m 5 http://127.0.0.1:9102/metrics; }
PA=$(pd_path a b) PB=$(pd_path b a)
scrape a >"$PT_DIR/a.prom"
scrape b >"$PT_DIR/b.prom"
check_prom() { # FILE SELF PEER DIRECTION PATH: parse; the 1 MiB is on PEER, not elsewhere
	"$PY" - "$@" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
path, self_addr, peer_addr, direction, peer_path = sys.argv[1:6]
fams = {f.name: f for f in text_string_to_metric_families(open(path).read())}
def samples(fam, suffix=""):
    return [s for s in fams[fam].samples if s.name == fam + suffix]
name = "pilot_peer_%s_bytes" % direction
per_peer = {s.labels["peer"]: s.value for s in samples(name, "_total")}
assert per_peer.get(peer_addr, 0) >= 1048576, ("peer bytes", per_peer)
assert all(v < 1048576 for k, v in per_peer.items() if k != peer_addr), per_peer
info = samples("pilot_node_info")
assert info and info[0].labels["address"] == self_addr, info
paths = {s.labels["peer"]: s.labels["path"] for s in samples("pilot_peer_info")}
assert paths.get(peer_addr) == peer_path, (paths, peer_path)  # what pilotctl peers says
assert samples("pilot_node_registered")[0].value == 1
assert fams["pilot_registry_client_request_duration_seconds"].type == "histogram"
assert fams["pilot_crypto_failures"].type == "counter"
assert {s.labels["state"] for s in samples("pilot_connections")} >= {"established", "time_wait"}
assert {s.labels["limit"] for s in samples("pilot_rate_limit_drops", "_total")} >= {"syn", "syn_untrusted"}
assert {s.labels["limit"] for s in samples("pilot_dataexchange_refused", "_total")} == {"quota", "peer_quota", "min_free"}
assert {s.labels["reason"] for s in samples("pilot_dns_refused", "_total")} == {"not_tun", "rate_limited"}
print("ok", per_peer)
PYEOF
}
addr() { pd_ctl "$1" info | pd_json 'd["address"]'; }
AA=$(addr a) BA=$(addr b)
pt_check metrics_sender_bytes_on_peer check_prom "$PT_DIR/a.prom" "$AA" "$BA" transmit "$PA"
pt_check metrics_receiver_bytes_on_peer check_prom "$PT_DIR/b.prom" "$BA" "$AA" receive "$PB"
pt_check metrics_healthz bash -c "ip netns exec $PT-a curl -s -m 5 http://127.0.0.1:9102/healthz | grep -qx ok"

# ---- the Grafana dashboard uses only names the programs export ----
pt_spawn rdv "$PT_DIR/rdv-http.log" "$PD_RDV" -registry-addr 127.0.0.1:19000 -beacon-addr 127.0.0.1:19001 \
	-http :9100 -wss-addr 127.0.0.1:18443 -no-rate-limit
RHPID=$PT_PID
pt_wait 50 pt_exec "$PT-rdv" curl -sf -m 2 -o /dev/null http://127.0.0.1:9100/healthz
pt_exec "$PT-rdv" curl -s -m 5 http://127.0.0.1:9100/metrics >"$PT_DIR/rdv.prom"
pt_stop "$RHPID"
dashboard_names_exist() {
	"$PY" - "$PT_DIR/a.prom" "$PT_DIR/rdv.prom" docs/grafana-pilot.json <<'PYEOF'
import json, re, sys
from prometheus_client.parser import text_string_to_metric_families
have = set()
for path in sys.argv[1:3]:
    for fam in text_string_to_metric_families(open(path).read()):
        have.update(s.name for s in fam.samples)
used = set(re.findall(r"\b(pilot_[a-z0-9_]+)", open(sys.argv[3]).read()))
# standby series exist only on a standby rendezvous
missing = sorted(n for n in used if n not in have and not n.startswith("pilot_standby_"))
assert not missing, missing
print("dashboard names:", len(used))
PYEOF
}
pt_check grafana_dashboard_names_exported dashboard_names_exist

# ---- pilotctl status: one screen, names the node, the registry and the peer ----
st=$(PILOT_SOCKET=$PT_DIR/a/ctl.sock "$PD_CTL" status 2>&1)
echo "$st" >"$PT_DIR/status.txt"
status_ok() {
	grep -q "^node  *$AA" "$PT_DIR/status.txt" && grep -q "registry .*connected" "$PT_DIR/status.txt" \
		&& grep -q "$BA  *$PA " "$PT_DIR/status.txt" && [ "$(wc -l <"$PT_DIR/status.txt")" -le 24 ]
}
cat "$PT_DIR/status.txt"
pt_check ctl_status_text status_ok
pt_check ctl_status_json bash -c "PILOT_SOCKET=$PT_DIR/a/ctl.sock $PD_CTL --json status \
	| $PY -c 'import json,sys; d=json.load(sys.stdin)[\"data\"]; assert d[\"registry\"][\"connected\"] and d[\"peers\"]'"

# ---- completion: loads, completes a verb, and the peers the daemon knows ----
COMPLETION=$PT_DIR/pilotctl.bash
"$PD_CTL" completion bash >"$COMPLETION"
cat >"$PT_DIR/complete.sh" <<'SHEOF'
# complete.sh COMPLETION WORDS...: print what the bash completion offers for the last word
source "$1" || exit 1
shift
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_pilotctl
printf '%s\n' "${COMPREPLY[@]}"
SHEOF
complete_words() {
	PATH=$(dirname "$PD_CTL"):$PATH PILOT_SOCKET=$PT_DIR/a/ctl.sock \
		bash --norc --noprofile "$PT_DIR/complete.sh" "$COMPLETION" "$@"
}
loads_clean() { # sourcing prints nothing and registers the function
	[ -z "$(bash --norc --noprofile -c "source $COMPLETION && complete -p pilotctl >/dev/null" 2>&1)" ] \
		&& bash --norc --noprofile -c "source $COMPLETION && complete -p pilotctl" | grep -q _pilotctl
}
pt_check completion_loads_in_bash loads_clean
completion_verb() { complete_words pilotctl sta | grep -qx status; }
pt_check completion_verb completion_verb
completion_subcommand() { complete_words pilotctl network jo | grep -qx join; }
pt_check completion_subcommand completion_subcommand
completion_flag() { complete_words pilotctl ping x --cou | grep -qx -- --count; }
pt_check completion_flag completion_flag
completion_peer() { complete_words pilotctl ping '' | grep -qx "$BA"; }
pt_check completion_peer completion_peer
if command -v zsh >/dev/null; then
	"$PD_CTL" completion zsh >"$PT_DIR/_pilotctl"
	pt_check completion_zsh_parses zsh -n "$PT_DIR/_pilotctl"
fi

exit 0
