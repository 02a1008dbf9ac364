#!/bin/bash
# pilot-rendezvous import-json (issue 16, Deliver 6): a reference registry.json
# snapshot (hand-written fixture in the registry.md §7 format: tests/integration/
# fixtures/registry-ref.json; its keys are Ed25519 keys of the seeds 0x41.., 0x42..,
# 0x43.., 0x44.. repeated 32 times) goes into the SQLite store:
#   - bad input is refused with the place named, and the store is not touched;
#   - a good import, then the same again: "nothing to do", same state;
#   - a store holding other state is refused without -replace, replaced with it;
#   - a rendezvous on the imported store answers lookups with the imported
#     hostname, networks and key, and the nodes re-register under their old IDs
#     (also the reaped one kept only in pub_key_idx); new nodes get IDs after next_node.
# Loopback only; the one daemon is started here and stopped by PID in cleanup.
set -u
cd "$(dirname "$0")/../.." || exit 1
TMP_PREFIX=pilot-rdvimport-test
# shellcheck source=tests/integration/rdv_common.bash
source tests/integration/rdv_common.bash
FIX=tests/integration/fixtures/registry-ref.json

# A copy of the fixture changed by the python statement $2 (s = the snapshot).
variant() { # OUT STATEMENT
	$PY -c 'import json, sys
s = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(s, open(sys.argv[2], "w"))' "$FIX" "$1" "$2"
}
refused() { # NAME WANT-IN-MESSAGE FILE [-replace]: exit 1, message, store unchanged
	local out rc before after
	before=$(cksum "$TMP/r.db" 2>/dev/null)
	out=$("$BIN" import-json -store "$TMP/r.db" "${@:4}" "$3" 2>&1)
	rc=$?
	after=$(cksum "$TMP/r.db" 2>/dev/null)
	if [ $rc = 1 ] && grep -qF -- "$2" <<<"$out" && [ "$before" = "$after" ]; then pass "$1"
	else fail "$1" "rc=$rc $out"; fi
}

# ---- bad input: refused, named, nothing written ----
printf '{"next_node": 3, "nodes": {' >"$TMP/trunc.json"
refused refuse_truncated "ends in the middle" "$TMP/trunc.json"
expect refuse_leaves_no_store $([ ! -e "$TMP/r.db" ]; echo $?)
echo '{"next_node": 3} x' >"$TMP/trail.json"
refused refuse_trailing_data "data after the JSON" "$TMP/trail.json"
echo '[1, 2]' >"$TMP/array.json"
refused refuse_not_object "not a JSON object" "$TMP/array.json"
echo '{"next_node": 3, "networks": {}}' >"$TMP/nonodes.json"
refused refuse_no_nodes "not a registry snapshot" "$TMP/nonodes.json"
variant "$TMP/badkey.json" 's["nodes"]["9"]["public_key"] = "AAAA"'
refused refuse_bad_key 'nodes["9"].public_key' "$TMP/badkey.json"
variant "$TMP/dupkey.json" 's["nodes"]["12"]["public_key"] = s["nodes"]["5"]["public_key"]'
refused refuse_duplicate_key "also the key of another node" "$TMP/dupkey.json"
variant "$TMP/idkey.json" 's["nodes"]["9"]["id"] = 10'
refused refuse_id_not_key 'nodes["9"].id' "$TMP/idkey.json"
variant "$TMP/duphost.json" 's["nodes"]["12"]["hostname"] = "alpha-imp"'
refused refuse_duplicate_hostname "also another node's" "$TMP/duphost.json"
variant "$TMP/badhost.json" 's["nodes"]["12"]["hostname"] = "Not_A_Name"'
refused refuse_bad_hostname 'nodes["12"].hostname' "$TMP/badhost.json"
variant "$TMP/member.json" 's["networks"]["1"]["members"].append(77)'
refused refuse_unknown_member "node 77 is not in nodes" "$TMP/member.json"
variant "$TMP/netname.json" 's["networks"]["2"]["name"] = "imported-one"'
refused refuse_duplicate_network_name "also another network's" "$TMP/netname.json"
variant "$TMP/pair.json" 's["trust_pairs"] = ["5:5"]'
refused refuse_bad_trust_pair "trust_pairs[0]" "$TMP/pair.json"
variant "$TMP/pki.json" 's["pub_key_idx"][s["nodes"]["5"]["public_key"]] = 6'
refused refuse_pki_conflict "names another node" "$TMP/pki.json"
out=$("$BIN" import-json "$FIX" 2>&1)
expect refuse_without_store $([ $? = 1 ] && grep -q 'needs a store' <<<"$out"; echo $?) "$out"
"$BIN" import-json -store "$TMP/r.db" 2>/dev/null
expect usage_without_file_exit_2 $([ $? = 2 ]; echo $?)
expect bad_input_wrote_nothing $([ ! -s "$TMP/r.db" ]; echo $?)

# ---- good import; again = nothing to do; other state needs -replace ----
# last_seen: now, so the imported nodes are live when the rendezvous starts.
variant "$TMP/good.json" 'import time
for n in s["nodes"].values(): n["last_seen"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())'
out=$("$BIN" import-json -store "$TMP/r.db" "$TMP/good.json" 2>&1)
expect import_ok $([ $? = 0 ] && grep -q '4 nodes, 2 networks (next node 21, next network 3)' <<<"$out"; echo $?) "$out"
sum1=$(cksum <"$TMP/r.db")
out=$("$BIN" -store "$TMP/r.db" import-json "$TMP/good.json" 2>&1)
expect import_again_nothing_to_do $([ $? = 0 ] && grep -q 'nothing to do' <<<"$out"; echo $?) "$out"
expect import_again_store_unchanged $([ "$sum1" = "$(cksum <"$TMP/r.db")" ]; echo $?)
variant "$TMP/other.json" 'del s["pub_key_idx"][s["nodes"]["12"]["public_key"]]
del s["nodes"]["12"]; s["networks"]["0"]["members"].remove(12)'
refused other_state_needs_replace "-replace overwrites them" "$TMP/other.json"
out=$("$BIN" import-json -store "$TMP/r.db" -replace "$TMP/other.json" 2>&1)
expect replace_ok $([ $? = 0 ] && grep -q '3 nodes' <<<"$out"; echo $?) "$out"
out=$("$BIN" import-json -replace -store "$TMP/r.db" "$TMP/good.json" 2>&1)
expect replace_back_ok $([ $? = 0 ] && grep -q '4 nodes' <<<"$out"; echo $?) "$out"

# ---- a rendezvous on the imported store ----
PORT=$(free_port)
RDV_FLAGS="-log-level info" start rdv -registry-addr "127.0.0.1:$PORT" -no-beacon -store "$TMP/r.db"
wait_ready "$PORT"
$PY - "$PORT" <<'EOF'
import base64, sys
sys.path.insert(0, "tests/integration")
import regclient as rc
from nacl.signing import SigningKey

port = int(sys.argv[1])
c = rc.Conn(port)
r = c.call({"type": "lookup", "node_id": 5})
rc.check("lookup_imported_node", r.get("type") == "lookup_ok" and r.get("hostname") == "alpha-imp"
         and 1 in r.get("networks", []) and r.get("polo_score") == 7 and r.get("tags") == ["web"]
         and r.get("public_key") == "25lf4lFp0UHKubu6krqgH58uHs599MsqwFGQ83/MH50=", r)
r = c.call({"type": "lookup", "node_id": 9})
rc.check("lookup_imported_task_exec", r.get("task_exec") is True and 2 in r.get("networks", []), r)
r = c.call({"type": "list_networks"})
names = {n.get("name") for n in r.get("networks", [])}
rc.check("networks_imported", {"imported-one", "imported-two"} <= names, r)


def reregister(seed, want, name):
    n = rc.Node(rc.Conn(port))
    n.key = SigningKey(bytes([seed]) * 32)
    n.pub = base64.b64encode(bytes(n.key.verify_key)).decode()
    r = n.register()
    rc.check(name, r.get("type") == "register_ok" and (r.get("node_id") == want if want else
                                                       r.get("node_id", 0) >= 21), r)


reregister(0x41, 5, "reregister_keeps_id")
reregister(0x44, 20, "reaped_node_keeps_id_from_pub_key_idx")
reregister(0x55, None, "new_node_after_next_node")
sys.exit(1 if rc.FAILED else 0)
EOF
exit 0
