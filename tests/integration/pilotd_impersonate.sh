#!/bin/bash
# Issue 12 §1-§2: nobody gets in under a trusted node's ID. An attacker with only
# UDP access (pilotd_impersonate.py) claims trusted node b's ID towards a and c
# with an anonymous key exchange (PILK) and sends SYNs to port 7 (echo, only for
# trusted peers on a private node) and 444:
#   (a) b is offline (deregistered): the victims' registry lookup finds no key;
#   (b) b is online but the victim's registry allowance is exhausted first by a
#       few hundred PILKs with random IDs (registry rate limit on);
#   (c) as (b) while a holds b's key, with an unverified PILA for b first (a
#       valid signature by another key), which must not clear what a knows.
# a runs with -require-auth=false (anonymous peers allowed), c with the defaults;
# c's trust.json is rewritten in the old form (no key for b) before the attacks,
# so it also shows the migration: the trusted ID is protected before its key is
# known, and the key is pinned at the first authenticated session. An anonymous
# session (allowed on a and on public p) reaches port 444 only. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
PY=/usr/bin/python3
ATK=tests/integration/pilotd_impersonate.py

pd_init imper

pd_lan a b c p x || { pt_fail namespaces_created; exit 1; }
# our own rendezvous: like pd_rendezvous, but with the registry's rate limits on
PD_REGISTRY=198.18.0.1:9000
PD_BEACON=198.18.0.1:9001
pt_spawn rdv "$PT_DIR/rdv.log" "$PD_RDV" -registry-addr "$PD_REGISTRY" -beacon-addr "$PD_BEACON" \
	-log-level debug
pt_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/198.18.0.1/9000" || { pt_fail rendezvous_started; exit 1; }
ok=1
pd_start a a -require-auth=false || ok=0
pd_start b b -deregister-on-exit || ok=0
pd_start c c || ok=0
pd_start p p -public -require-auth=false || ok=0
if [ $ok = 1 ]; then pt_pass nodes_registered; else pt_fail nodes_registered; exit 1; fi
declare -A IP=([a]=198.18.0.10 [b]=198.18.0.11 [c]=198.18.0.12 [p]=198.18.0.13)

port_of() { pd_ctl "$1" info | pd_json "d['listen_addr'].rsplit(':', 1)[1]"; }
attack() { # VICTIM CLAIM_ID [flood [--pila]]: prints the attacker's JSON result
	pt_exec "$PT-x" "$PY" "$ATK" attack "${IP[$1]}" "$(port_of "$1")" "$2" "${PD_ID[$1]}" 8 \
		${3:+--flood "$3"} ${4:-}
}
only_444() { # JSON on stdin: no port but 444 answered SYN-ACK
	"$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if set(d["synack"]) <= {444} else 1)'
}
expect_only_444() { # NAME JSON
	if echo "$2" | only_444; then pt_pass "$1"; else pt_fail "$1" "$2"; fi
}
has_key_for() { # A's trust.json holds a key for B
	"$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if any(t["node_id"] == int(sys.argv[2]) and t.get("public_key") for t in d["trusted"] or []) else 1)' \
		"$PT_DIR/$1/trust.json" "${PD_ID[$2]}"
}
strip_keys() { # rewrite A's trust.json as an old file: trusted entries without keys
	"$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
for t in d["trusted"] or []: t["public_key"] = ""
d.pop("keys", None)
json.dump(d, open(sys.argv[1], "w"), indent=2)' "$PT_DIR/$1/trust.json"
}

# ---- the tool works, and anonymous sessions reach port 444 only ----
STRANGER=1234567
r=$(attack a $STRANGER)
pt_check anon_stranger_session_private bash -c "echo '$r' | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"session\"] and 444 in d[\"synack\"] else 1)'"
expect_only_444 anon_stranger_private_only_444 "$r"
r=$(attack p $((STRANGER + 1)))
pt_check anon_stranger_session_public bash -c "echo '$r' | $PY -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"session\"] and 444 in d[\"synack\"] else 1)'"
expect_only_444 anon_stranger_public_only_444 "$r"

# ---- a and c trust b; restarted, so only trust.json knows b ----
pt_check trust_a_b pd_trust_pair a b
pt_check trust_c_b pd_trust_pair c b
pt_check ping_a_b pd_wait 10 pd_ping_ok a b
pt_check ping_c_b pd_wait 10 pd_ping_ok c b
pt_check key_pinned_a_b pd_wait 5 has_key_for a b
pd_stop c
strip_keys c
pd_start c c || pt_fail restart_c
pd_restart a || pt_fail restart_a

# ---- (a) b offline: deregistered, its lookup fails ----
pd_stop b
b_gone() { ! pd_ctl a lookup "${PD_ID[b]}" | pd_json 'd["public_key"]' >/dev/null; }
pt_check b_deregistered pd_wait 10 b_gone
expect_only_444 offline_claim_a_only_444 "$(attack a "${PD_ID[b]}")"
expect_only_444 offline_claim_c_only_444 "$(attack c "${PD_ID[b]}")"

# ---- (b) b online, the victim's registry allowance exhausted first ----
B_ID=${PD_ID[b]}
pd_start b b -deregister-on-exit || pt_fail restart_b
pt_check b_same_id [ "${PD_ID[b]}" = "$B_ID" ]
pd_restart a || pt_fail restart_a2
pd_stop c && pd_start c c || pt_fail restart_c2
expect_only_444 exhausted_claim_a_only_444 "$(attack a "${PD_ID[b]}" 1000)"
# the scenario's premise: a's lookups failed (c, with -require-auth, never asks
# the registry about a PILK, so its allowance cannot be burnt that way)
lookup_errors() { pd_ctl "$1" info | pd_json 'd["counters"]["tunnel_kx_lookup_errors"]'; }
pt_check allowance_exhausted_a [ "$(lookup_errors a)" -gt 0 ]
expect_only_444 exhausted_claim_c_only_444 "$(attack c "${PD_ID[b]}" 1000)"

# ---- (c) a and b talking (a holds b's key), then an unverified PILA for b ----
# (a valid signature by another key) while a's allowance is exhausted, then the
# PILK: the PILA must not make a forget b's key.
pd_restart a || pt_fail restart_a3
pt_check ping_a_b_before_pila pd_wait 40 pd_ping_ok a b
expect_only_444 pila_then_claim_a_only_444 "$(attack a "${PD_ID[b]}" 1000 --pila)"

# ---- the real b still gets in (once the allowance refilled), keys pinned ----
pt_check real_b_pings_a pd_wait 40 pd_ping_ok b a
pt_check real_b_pings_c pd_wait 40 pd_ping_ok b c
pt_check migrated_key_pinned_c_b pd_wait 5 has_key_for c b

for n in a b c p; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
exit 0
