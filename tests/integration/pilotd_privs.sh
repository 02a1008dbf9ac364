#!/bin/bash
# pilotd's privileges (issue 12 §7), read from /proc/PID/status:
#  - as root without -user, once up, only CAP_NET_ADMIN is left (effective,
#    permitted and bounding set), and the node works (TUN ULA, DNS, ping);
#  - with -user, the uid is switched before any network input: already while
#    the registry is unreachable (nothing registered, nothing read) the process
#    runs as the user with just CAP_NET_ADMIN, CAP_NET_BIND_SERVICE (and
#    CAP_SETPCAP, to shrink the bounding set at the last step), the log
#    shows the switch before the first registration attempt; once registered it
#    keeps nothing, and the own ULA and its DNS socket (which need those two)
#    were still set up.
# Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init prv
eq() { if [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2', want '$3'"; fi; }
status() { awk -v k="$2:" '$1 == k { print $2 $3 $4 $5 }' "/proc/$1/status"; }
NET_ADMIN=0000000000001000
ADMIN_BIND=0000000000001500 # CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_SETPCAP

pd_lan a b u w || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }

# ---- root, no -user ----
if pd_start a a -hostname alpha && pd_start b b -hostname bravo; then
	pt_pass nodes_registered
else
	pt_fail nodes_registered
	exit 1
fi
pid=${PD_PID[a]}
pt_check root_ula_up pd_wait 10 bash -c "$PD_CTL --json --socket $PT_DIR/a/ctl.sock info | grep -q '\"ipv6\":\"fd50'"
pt_check root_dropped_logged pd_wait 10 grep -q "dropped privileges user=root capabilities=CAP_NET_ADMIN" "$PT_DIR/a.log"
eq root_capeff_net_admin_only "$(status "$pid" CapEff)" $NET_ADMIN
eq root_capprm_net_admin_only "$(status "$pid" CapPrm)" $NET_ADMIN
eq root_capbnd_net_admin_only "$(status "$pid" CapBnd)" $NET_ADMIN
eq root_uid_kept "$(status "$pid" Uid)" 0000
pt_check root_node_works pd_trust_pair a b
pt_check root_ping pd_ping_ok a b

# ---- -user nobody, registry unreachable: switched before anything is read ----
mkdir -p "$PT_DIR/u" "$PT_DIR/u-id" "$PT_DIR/w" "$PT_DIR/w-id"
chmod 711 "$PT_DIR"
chown nobody "$PT_DIR/u-id" "$PT_DIR/w-id"
pt_spawn u "$PT_DIR/u.log" "$PD_BIN" -registry 198.18.0.1:9999 -beacon 198.18.0.1:9998 \
	-identity "$PT_DIR/u-id/identity.json" -socket "$PT_DIR/u/ctl.sock" -log-level debug -user nobody
upid=$PT_PID
pt_check user_started pd_wait 10 grep -q "started socket=" "$PT_DIR/u.log"
eq user_uid_before_registration "$(status "$upid" Uid)" 65534655346553465534
eq user_caps_before_registration "$(status "$upid" CapEff)" $ADMIN_BIND
eq user_bounding_before_registration "$(status "$upid" CapBnd)" $ADMIN_BIND
pt_check user_switch_logged_first bash -c "grep -n 'switched to user=nobody' '$PT_DIR/u.log' | head -1 | cut -d: -f1 \
	>'$PT_DIR/l1' && test -s '$PT_DIR/l1' && ! head -n \$(cat '$PT_DIR/l1') '$PT_DIR/u.log' \
	| grep -q 'registering\|beacon reports\|control client'"
pt_stop "$upid"

# ---- -user nobody, registry reachable: nothing kept once up, the ULA was set up ----
pt_spawn w "$PT_DIR/w.log" "$PD_BIN" -registry "$PD_REGISTRY" -beacon "$PD_BEACON" -hostname whiskey \
	-identity "$PT_DIR/w-id/identity.json" -socket "$PT_DIR/w/ctl.sock" -log-level debug -user nobody
wpid=$PT_PID
PD_PID[w]=$wpid
if pd_wait 15 pd_registered w; then
	pt_pass user_registered
	PD_ID[w]=$(pd_ctl w info | pd_json 'd["node_id"]')
	pt_check user_dropped_logged pd_wait 10 grep -q "dropped privileges user=nobody capabilities=none" "$PT_DIR/w.log"
	eq user_caps_after "$(status "$wpid" CapEff)" 0000000000000000
	eq user_capbnd_after "$(status "$wpid" CapBnd)" 0000000000000000
	eq user_capprm_after "$(status "$wpid" CapPrm)" 0000000000000000
	eq user_uid_after "$(status "$wpid" Uid)" 65534655346553465534
	pt_check user_ula_configured bash -c "ip -n $PT-w -6 addr show dev pilot0 | grep -q 'inet6 fd50:494c:4f54::${PD_ID[w]}/64'"
	pt_check user_dns_on_ula bash -c "! grep -q 'no DNS on the own ULA' '$PT_DIR/w.log'"
	pt_check user_trust_pair pd_trust_pair w a
	pt_check user_ping pd_ping_ok a w
else
	pt_fail user_registered "$(tail -n 5 "$PT_DIR/w.log")"
fi
