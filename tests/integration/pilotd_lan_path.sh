#!/bin/bash
# Two private nodes on one LAN (no NAT): their first contact goes through the
# beacon relay (the registry refuses to resolve a private node before trust),
# but once they trust each other the pair must leave the relay: after a
# transfer both sides show a direct path (labelled punched when the beacon
# coordinated it) within a few seconds and the beacon's
# relayed-packet counter stops growing while they keep talking.
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init lanpath
pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 -http 127.0.0.1:9100 || { pt_fail rendezvous_started; exit 1; }
pd_start a a -tun=off || { pt_fail node_a_started; exit 1; }
pd_start b b -tun=off || { pt_fail node_b_started; exit 1; }

relayed() {
	pt_exec "$PT-rdv" curl -s -m 5 http://127.0.0.1:9100/metrics \
		| awk '$1 == "pilot_beacon_relayed_packets_total" { print $2 }'
}

pt_check trusted pd_trust_pair a b
head -c 1048576 /dev/urandom >"$PT_DIR/mb.bin"
r=$(pd_ctl a send-file "${PD_ID[b]}" "$PT_DIR/mb.bin" --timeout 60s)
echo "$r" | pd_json 'd' >/dev/null && pt_pass send_file_1mib || pt_fail send_file_1mib "$r"

direct() { [[ "$(pd_path "$1" "$2")" =~ ^(direct|punched)$ ]]; }
if pd_wait 6 direct a b && pd_wait 2 direct b a; then
	pt_pass path_direct_both_ways
else
	pt_fail path_direct_both_ways "a->b $(pd_path a b), b->a $(pd_path b a)"
fi

# Talking now goes around the beacon: a second transfer and pings add (almost)
# nothing to its relay counter (a keepalive or late probe may still pass).
R0=$(relayed)
r=$(pd_ctl b send-file "${PD_ID[a]}" "$PT_DIR/mb.bin" --timeout 60s)
echo "$r" | pd_json 'd' >/dev/null && pt_pass send_file_back || pt_fail send_file_back "$r"
pd_ping_ok a b 3 && pt_pass ping_ok || pt_fail ping_ok
R1=$(relayed)
if [ -n "$R0" ] && [ -n "$R1" ] && [ $((R1 - R0)) -le 4 ]; then
	pt_pass "beacon_relay_quiet_${R0}_${R1}"
else
	pt_fail beacon_relay_quiet "relayed packets $R0 -> $R1"
fi

pd_stop a
pd_stop b
pt_check no_sanitizer_reports bash -c "! grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error' $PT_DIR/a.log $PT_DIR/b.log"
