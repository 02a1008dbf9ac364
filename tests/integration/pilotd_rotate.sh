#!/bin/bash
# pilotctl rotate-key in namespaces on one bridge: the registry accepts the new
# key (signed with the old one) and lookups show it; the identity file holds it;
# a trusted peer still pings through the existing session, and again after the
# rotated node restarts (new key exchange signed with the new key, same node ID;
# the peer's pinned key follows, the registry confirming it);
# a new peer can still handshake. Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init rotate

pd_lan a b c || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
ok=1
for n in a b c; do pd_start "$n" "$n" || ok=0; done
if [ $ok = 1 ]; then pt_pass three_nodes_registered; else pt_fail three_nodes_registered; exit 1; fi

key_of() { # the public key the registry holds for NAME, asked by ASKER
	pd_ctl "$2" lookup "${PD_ID[$1]}" | pd_json 'd["public_key"]'
}
file_key() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_key"])' "$PT_DIR/$1/identity.json"
}

eq() { # NAME GOT WANT
	if [ -n "$2" ] && [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2' want '$3'"; fi
}
info_key() { pd_ctl "$1" info | pd_json 'd["public_key"]'; }

pt_check trust_pair pd_trust_pair a b
pt_check ping_before pd_ping_ok b a
old=$(key_of a b)
eq old_key_in_file "$(file_key a)" "$old"

r=$(pd_ctl a rotate-key)
new=$(echo "$r" | pd_json 'd["public_key"]')
eq rotate_reply_previous "$(echo "$r" | pd_json 'd["previous_public_key"]')" "$old"
eq rotate_reply_saved "$(echo "$r" | pd_json 'd["saved"]')" True
pt_check rotate_new_key [ -n "$new" -a "$new" != "$old" ]
eq rotate_lookup_new_key "$(key_of a b)" "$new"
eq rotate_info_new_key "$(info_key a)" "$new"
eq rotate_file_new_key "$(file_key a)" "$new"
pt_check rotate_no_leftover [ ! -e "$PT_DIR/a/identity.json.rotating" ]
pt_check ping_after_rotate pd_ping_ok b a
# later signed registry requests carry the new key's signature
eq signed_after_rotate "$(pd_ctl a set-hostname rotated-a | pd_json 'd.get("hostname")')" rotated-a
eq hostname_lookup_after_rotate "$(pd_ctl b lookup "${PD_ID[a]}" | pd_json 'd.get("hostname")')" rotated-a

# a restart loads the new key, keeps the node ID, and the peer re-keys with it
pd_restart a || pt_fail restart_registered
eq restart_same_node_id "$(pd_ctl a info | pd_json 'd["node_id"]')" "${PD_ID[a]}"
eq restart_keeps_new_key "$(info_key a)" "$new"
pt_check ping_after_restart pd_wait 15 pd_ping_ok b a
pt_check ping_back_after_restart pd_wait 15 pd_ping_ok a b
# b had a's old key pinned in its trust entry: the new one replaced it because
# the registry holds it (issue 12 §1), and the change was counted
trusted_key() { # the key A's trust entry for B holds
	pd_ctl "$1" trust | pd_json "[t['public_key'] for t in d['trusted'] if t['node_id'] == ${PD_ID[$2]}][0]"
}
eq pin_follows_rotation "$(trusted_key b a)" "$new"
eq key_change_counted "$(pd_ctl b info | pd_json 'd["counters"]["tunnel_kx_key_changes"]')" 1

# a new peer can handshake with the rotated node
pt_check new_peer_trust pd_trust_pair c a
pt_check new_peer_ping pd_wait 10 pd_ping_ok c a

# a second rotation works too (signed with the first new key)
r=$(pd_ctl a rotate-key)
eq rotate_twice_previous "$(echo "$r" | pd_json 'd["previous_public_key"]')" "$new"
eq rotate_twice_lookup "$(key_of a c)" "$(echo "$r" | pd_json 'd["public_key"]')"

for n in a b c; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
exit 0
