#!/bin/bash
# The data exchange disk limits through the daemon (issue 12 §5): a trusted peer
# sending more than -dataexchange-peer-quota gets an ERR for the frame that does
# not fit, nothing of it is stored, the refusal is counted in pilotctl info,
# and another peer can still send. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init cap
pd_lan a b c || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
ok=1
pd_start a a -tun=off -dataexchange-peer-quota 1 || ok=0
pd_start b b -tun=off || ok=0
pd_start c c -tun=off || ok=0
if [ $ok = 1 ]; then pt_pass nodes_registered; else pt_fail nodes_registered; exit 1; fi
pt_check trust_ab pd_trust_pair a b
pt_check trust_ac pd_trust_pair a c
counter() { pd_ctl a info | pd_json "d['counters']['$1']"; }
stored() { ls "$PT_DIR"/a/received/ 2>/dev/null | grep -c "^f-.*\.bin$"; }

head -c $((700 << 10)) /dev/urandom >"$PT_DIR/f.bin"
ack() { pd_ctl "$1" send-file "${PD_ID[a]}" "$PT_DIR/f.bin" --timeout 30s | pd_json 'd["ack"]'; }
r1=$(ack b)
r2=$(pd_ctl b send-file "${PD_ID[a]}" "$PT_DIR/f.bin" --timeout 30s)
echo "# b -> a: '$r1' / '$r2'"
pt_check first_file_fits bash -c "[[ '$r1' == ACK* ]]"
# pilotctl reports a refused frame as an error carrying the ERR reply
pt_check second_file_over_peer_quota bash -c "echo '$r2' | grep -q 'ERR FILE save failed: disk quota for this peer exceeded'"
pt_check peer_quota_refusal_counted test "$(counter dx_peer_quota_refused)" = 1
r3=$(ack c)
pt_check other_peer_still_stores bash -c "[[ '$r3' == ACK* ]]"
pt_check only_accepted_files_stored test "$(stored)" = 2
pt_check other_counters_present bash -c "test '$(counter dx_quota_refused)' = 0 && test '$(counter dx_min_free_refused)' = 0 \
	&& test -n '$(counter pkt_drop_syn_untrusted)'"
