#!/bin/bash
# The defaults a new user meets first (issue 16, Deliver 6):
#  - without -identity, pilotd keeps a persistent identity at /var/lib/pilot/identity.json
#    (root; ~/.pilot/identity.json otherwise); -identity= stays ephemeral. /var/lib is a
#    bind mount of a temp folder in a private mount namespace, so nothing is written to
#    the host's /var/lib.
#  - without -hostname, the node registers pilot-XXXXXXXX (SHA-256 of its public key).
#  - -admin-token on pilotd and --admin-token on pilotctl for a registry that requires it.
# Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/netns.sh
. tests/integration/pilotd_common.bash
pd_init defaults
ADMIN=adm-$$-secret

pd_lan a b c || { pt_fail namespaces_created; exit 1; }
PD_REGISTRY=198.18.0.1:9000
PD_BEACON=198.18.0.1:9001
pt_spawn rdv "$PT_DIR/rdv.log" "$PD_RDV" -registry-addr "$PD_REGISTRY" -beacon-addr "$PD_BEACON" \
	-no-rate-limit -admin-token "$ADMIN" -log-level debug
pt_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/198.18.0.1/9000" || { pt_fail rendezvous_started; exit 1; }

# ---- default hostname: pilot- + 8 hex of SHA-256(public key) ----
pd_start a a || { pt_fail node_a_registered; exit 1; }
pd_start b b -admin-token "$ADMIN" -hostname "bee-$$" || { pt_fail node_b_registered; exit 1; }
want=$(pd_ctl a info | pd_json '"pilot-" + __import__("hashlib").sha256(__import__("base64").b64decode(d["public_key"])).hexdigest()[:8]')
pt_check default_hostname_in_info bash -c "[ '$(pd_ctl a info | pd_json 'd["hostname"]')' = '$want' ]"
found_a() { [ "$(pd_ctl b find "$want" | pd_json 'd["node_id"]')" = "${PD_ID[a]}" ]; }
pt_check default_hostname_registered pd_wait 10 found_a
pt_check explicit_hostname_wins [ "$(pd_ctl b info | pd_json 'd["hostname"]')" = "bee-$$" ]

# ---- -admin-token / --admin-token ----
# Our registry also takes a signed join/leave; the admin token shows where it bypasses
# the join rule (a "token" network joined without its token).
ctl() { local n=$1; shift; "$PD_CTL" --json --socket "$PT_DIR/$n/ctl.sock" "$@" >"$PT_DIR/ctl.out" 2>&1; }
out=$(pd_ctl a network create "adm-$$")
pt_check create_without_admin_token_refused bash -c "! grep -q '\"ok\": *true' <<<'$out' && grep -qi 'admin' <<<'$out'"
net=$(pd_ctl a network create "adm-$$" --join-rule token --token "jt-$$" --admin-token "$ADMIN" |
	pd_json 'd.get("network_id") or d.get("id")')
pt_check create_with_ctl_admin_token [ -n "$net" ]
pt_check join_with_pilotd_admin_token ctl b network join "${net:-1}"
pt_check leave_with_pilotd_admin_token ctl b network leave "${net:-1}"
pt_check leave_with_ctl_admin_token ctl a network leave "${net:-1}" --admin-token "$ADMIN"
pt_check join_without_admin_token_refused bash -c \
	"! '$PD_CTL' --json --socket '$PT_DIR/a/ctl.sock' network join '${net:-1}' >/dev/null 2>&1"
pt_check join_with_ctl_admin_token ctl a network join "${net:-1}" --admin-token "$ADMIN"
pt_check empty_admin_token_flag_refused bash -c "! '$PD_CTL' --socket '$PT_DIR/a/ctl.sock' network leave 1 --admin-token= 2>/dev/null"

# ---- default identity (root: /var/lib/pilot/identity.json) ----
VARLIB=$PT_DIR/varlib
mkdir -p "$VARLIB" "$PT_DIR/c"
start_c() { # flags...: pilotd in c with /var/lib = $VARLIB; sets CPID
	pt_spawn c "$PT_DIR/c.log" unshare -m --propagation private sh -c \
		'mount --bind "$0" /var/lib && exec "$@"' "$VARLIB" "$PD_BIN" -registry "$PD_REGISTRY" \
		-beacon "$PD_BEACON" -tun=off -socket "$PT_DIR/c/ctl.sock" -log-level debug "$@"
	CPID=$PT_PID
	pd_wait 15 pd_registered c
}
c_id() { pd_ctl c info | pd_json 'd["node_id"]'; }
if start_c -identity=; then
	id1=$(c_id)
	pt_check ephemeral_writes_nothing [ ! -e "$VARLIB/pilot" ]
	pt_check ephemeral_reported bash -c "[ '$(pd_ctl c info | pd_json 'not d["identity"]')' = True ]"
	pt_stop "$CPID"
else pt_fail ephemeral_node_registered; fi
if start_c; then
	id2=$(c_id)
	pt_check default_identity_created [ -s "$VARLIB/pilot/identity.json" ]
	pt_check default_identity_mode_0600 [ "$(stat -c %a "$VARLIB/pilot/identity.json")" = 600 ]
	pt_check default_identity_logged grep -q 'created identity path=/var/lib/pilot/identity.json' "$PT_DIR/c.log"
	pt_stop "$CPID"
	if start_c; then
		pt_check default_identity_persists [ "$(c_id)" = "$id2" ]
		pt_check ephemeral_was_another_node [ "${id1:-x}" != "$id2" ]
		pt_stop "$CPID"
	else pt_fail default_identity_restart_registered; fi
else pt_fail default_identity_node_registered; tail -n 20 "$PT_DIR/c.log"; fi
pt_check host_var_lib_untouched [ ! -e /var/lib/pilot/identity.json ]

exit 0
