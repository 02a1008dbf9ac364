#!/bin/bash
# The Debian packages (issue 19), built with Debian's tooling from a clean clone
# of HEAD (commit first: uncommitted changes are not in a clone):
#   make deb                 both packages build (dpkg-buildpackage -b -us -uc)
#   lintian                  no error or warning (overrides in debian/*.lintian-overrides)
#   dpkg-deb -c              holds every program, man page and document the units
#                            and man pages name
#   dpkg --root              install into a scratch root with its own package database
#                            (never the host's): maintainer scripts run chrootless with
#                            DPKG_ROOT, so systemd-sysusers/tmpfiles/deb-systemd-helper
#                            act on the scratch root; systemctl/deb-systemd-invoke are
#                            stubs that only record their calls (no systemd is touched)
#   users and directories    pilot / pilot-rendezvous system users, /var/lib/* owned by them
#   systemd-analyze verify   on the units in the scratch root (+ the host's unit set, which
#                            the units' dependencies name), and the security exposure
#   a real start             the installed pilot-rendezvous and pilotd from the shipped
#                            configs (pilotd: only "registry" added) in namespaces, each as
#                            its system user with only the unit's ambient capabilities
#                            (setpriv, as systemd would), /var/lib and /run private to them;
#                            pilotd registers, brings up pilot0, answers pilotctl status;
#                            pilot-nameserver (its config and unit's user and capability)
#                            serves port 53 on pilot0 and answers pilotctl
#   dpkg --purge             conffiles go
# Skipped (SKIP:) without the packaging tools: scripts/install-deps.sh --packaging.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh

missing=""
for t in dpkg-buildpackage dh lintian systemd-analyze setpriv git; do
	command -v "$t" >/dev/null || missing="$missing $t"
done
if [ -n "$missing" ]; then
	echo "SKIP: packaging (missing:$missing; install them with: scripts/install-deps.sh --packaging)"
	exit 0
fi
pt_init pkg
chmod 0711 "$PT_DIR" # the system users read the shipped configs below it
PY=/usr/bin/python3

# ---- make deb from a clean clone ----
CLONE=$PT_DIR/clone
git clone -q "$PWD" "$CLONE" && git -C "$CLONE" checkout -q "$(git rev-parse HEAD)"
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "note: uncommitted changes are not tested"
if make -C "$CLONE" deb >"$PT_DIR/deb.log" 2>&1; then
	pt_pass make_deb_from_clean_clone
else
	tail -n 30 "$PT_DIR/deb.log"
	pt_fail make_deb_from_clean_clone
	exit 1
fi
DEBS=$CLONE/build/deb
PILOT_DEB=$(ls "$DEBS"/pilot_*.deb) RDV_DEB=$(ls "$DEBS"/pilot-rendezvous_*.deb)

# ---- lintian ----
lintian --fail-on error,warning --display-info "$DEBS"/pilot_*.changes >"$PT_DIR/lintian.txt" 2>&1
rc=$?
echo "lintian output (overrides: debian/*.lintian-overrides):"
sed 's/^/  /' "$PT_DIR/lintian.txt"
[ $rc -eq 0 ] && pt_pass lintian_clean || pt_fail lintian_clean "exit $rc"

# ---- what the units and man pages name is in the packages ----
contents_ok() {
	local listing=$PT_DIR/contents.txt missing=() p
	{ dpkg-deb -c "$PILOT_DEB"; dpkg-deb -c "$RDV_DEB"; } | awk '{print substr($6, 2)}' >"$listing"
	has() { grep -qx "$1" "$listing"; }
	for p in $(grep -ho '^Exec[A-Za-z]*=[^ ]*' dist/systemd/*.service | cut -d= -f2 | grep -v '^/bin/kill$'); do
		has "$p" || missing+=("$p (unit Exec)")
	done
	for p in $(grep -ho 'man:[a-z-]*([0-9])' dist/systemd/*.service | sort -u); do
		p=${p#man:}
		has "/usr/share/man/man${p: -2:1}/${p%(*}.${p: -2:1}.gz" || missing+=("$p (unit man:)")
	done
	for p in $(grep -ho 'file:[^ ]*' dist/systemd/*.service); do
		has "${p#file:}" || missing+=("$p (unit file:)")
	done
	for p in /lib/systemd/system/pilotd.service /lib/systemd/system/pilot-rendezvous.service \
		/lib/systemd/system/pilot-nameserver.service /etc/pilot/pilot-nameserver.json; do
		has "$p" || missing+=("$p")
	done
	# every packaged path a man page's FILES section names
	for p in $(sed -n '/^\.SH FILES/,/^\.SH/p' man/*.[1-8] | grep -oP '(?<![\w/.-])/(etc|usr|lib)/[\w./-]*[\w]' | sort -u); do
		has "$p" || has "$p.gz" || missing+=("$p (man FILES)")
	done
	[ ${#missing[@]} -eq 0 ] || { printf 'not in the packages: %s\n' "${missing[@]}"; return 1; }
}
pt_check contents_hold_what_units_and_man_pages_name contents_ok

# ---- install into a scratch root (its own dpkg database) ----
ROOT=$PT_DIR/root
mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates" "$PT_DIR/stub"
touch "$ROOT/var/lib/dpkg/status"
for s in systemctl deb-systemd-invoke; do
	printf '#!/bin/sh\necho "%s $*" >>"%s/stub-calls"\nexit 0\n' "$s" "$PT_DIR" >"$PT_DIR/stub/$s"
	chmod 0755 "$PT_DIR/stub/$s"
done
host_before=$(md5sum /etc/passwd /etc/group; dpkg-query -W -f='${db:Status-Status}' pilot 2>/dev/null)
if PATH=$PT_DIR/stub:$PATH dpkg --root="$ROOT" --force-script-chrootless --force-depends \
	-i "$PILOT_DEB" "$RDV_DEB" >"$PT_DIR/dpkg.log" 2>&1; then
	pt_pass dpkg_root_install
else
	tail -n 20 "$PT_DIR/dpkg.log"
	pt_fail dpkg_root_install
	exit 1
fi
host_after=$(md5sum /etc/passwd /etc/group; dpkg-query -W -f='${db:Status-Status}' pilot 2>/dev/null)
pt_check host_untouched [ "$host_before" = "$host_after" ]
pt_check both_installed_in_scratch_db bash -c \
	"[ \$(dpkg --root=$ROOT -l pilot pilot-rendezvous | grep -c '^ii') = 2 ]"

sysuser() { # NAME: a system user with nologin, home in /var/lib
	awk -F: -v u="$1" '$1 == u && $3 < 1000 && $7 ~ /nologin$/ && $6 == "/var/lib/" u {f=1} END {exit !f}' \
		"$ROOT/etc/passwd"
}
pt_check pilot_user_created sysuser pilot
pt_check pilot_rendezvous_user_created sysuser pilot-rendezvous
PUID=$(awk -F: '$1 == "pilot" {print $3}' "$ROOT/etc/passwd")
PGID=$(awk -F: '$1 == "pilot" {print $4}' "$ROOT/etc/passwd")
RUID=$(awk -F: '$1 == "pilot-rendezvous" {print $3}' "$ROOT/etc/passwd")
RGID=$(awk -F: '$1 == "pilot-rendezvous" {print $4}' "$ROOT/etc/passwd")
owned() { [ "$(stat -c '%u:%g %a' "$1")" = "$2 750" ]; }
pt_check state_dir_pilot owned "$ROOT/var/lib/pilot" "$PUID:$PGID"
pt_check state_dir_rendezvous owned "$ROOT/var/lib/pilot-rendezvous" "$RUID:$RGID"
pt_check conffiles_registered grep -qx /etc/pilot/pilotd.json "$ROOT/var/lib/dpkg/info/pilot.conffiles"
pt_check nameserver_conffile_registered grep -qx /etc/pilot/pilot-nameserver.json "$ROOT/var/lib/dpkg/info/pilot.conffiles"
pt_check completion_installed test -s "$ROOT/usr/share/bash-completion/completions/pilotctl"

# ---- systemd-analyze on the installed units ----
mkdir -p "$ROOT/bin"
cp -a /lib/systemd/system/. "$ROOT/lib/systemd/system/" 2>/dev/null
cp /bin/kill "$ROOT/bin/kill"
pt_check systemd_analyze_verify systemd-analyze verify --man=no --root="$ROOT" pilotd.service pilot-rendezvous.service \
	pilot-nameserver.service
for u in pilotd pilot-rendezvous pilot-nameserver; do
	systemd-analyze security --offline=true --root="$ROOT" "$u.service" >"$PT_DIR/security-$u.txt" 2>&1
	score=$(grep -o 'Overall exposure level for [^:]*: [0-9.]*' "$PT_DIR/security-$u.txt" | awk '{print $NF}')
	echo "systemd-analyze security $u.service: ${score:-?}"
	pt_check "security_exposure_${u//-/_}_at_most_3" awk -v s="${score:-10}" 'BEGIN {exit !(s <= 3.0)}'
done

# ---- start both from the shipped configs, as the unit would ----
# setpriv gives what User=, AmbientCapabilities=, CapabilityBoundingSet= and
# NoNewPrivileges= give (the rest of the sandbox is systemd's: not exercised
# here, systemd-analyze above checks it); /var/lib and /run are tmpfs private to the process
# (ip netns exec makes a mount namespace) holding only the state directories.
as_unit() { # NS LOG UID GID CAPS STATE_DIR CMD...
	local ns=$1 log=$2 uid=$3 gid=$4 caps=$5 state=$6
	shift 6
	pt_spawn "$ns" "$log" sh -c '
set -e
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mkdir /var/lib/'"$state"' && mount --bind "'"$ROOT"'/var/lib/'"$state"'" /var/lib/'"$state"'
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -m 0755 /run/pilot && chown '"$uid:$gid"' /run/pilot
# Debian (udev) makes /dev/net/tun 0666; some build hosts have it 0600: the same
# device node, 0666, over it in this mount namespace only.
if [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
	mknod -m 0666 /run/.tun c 10 200 && mount --bind /run/.tun /dev/net/tun
fi
exec setpriv --reuid='"$uid"' --regid='"$gid"' --clear-groups --no-new-privs \
	--inh-caps=-all'"${caps:+,$caps}"' --ambient-caps=-all'"${caps:+,$caps}"' \
	--bounding-set=-all'"${caps:+,$caps}"' "$@"' _ "$@"
}
pt_bridge net && pt_ns rdv && pt_attach rdv net 198.18.0.1/24 && pt_ns node && pt_attach node net 198.18.0.10/24 \
	|| { pt_fail namespaces_created; exit 1; }
# ExecStartPre= (-n) then ExecStart=, as in the units.
START='"$0" -config "$1" -n && exec "$0" -config "$1"'
RCONF=$ROOT/etc/pilot/pilot-rendezvous.json
as_unit rdv "$PT_DIR/rdv.log" "$RUID" "$RGID" +net_bind_service pilot-rendezvous \
	sh -c "$START" "$ROOT/usr/sbin/pilot-rendezvous" "$RCONF"
RPID=$PT_PID
pt_check rendezvous_started pt_wait 10 pt_exec "$PT-rdv" curl -sf -m 2 -o /dev/null http://127.0.0.1:9100/healthz

# The operator's one edit: the registry address.
CONF=$ROOT/etc/pilot/pilotd.json
"$PY" -c 'import json, sys
c = json.load(open(sys.argv[1])); c["registry"] = sys.argv[2]
json.dump(c, open(sys.argv[1], "w"), indent=2)' "$CONF" 198.18.0.1:9000
as_unit node "$PT_DIR/pilotd.log" "$PUID" "$PGID" +net_admin,+net_bind_service pilot \
	sh -c "$START" "$ROOT/usr/sbin/pilotd" "$CONF"
DPID=$PT_PID
registered() { pt_exec "$PT-node" curl -s -m 2 http://127.0.0.1:9102/metrics | grep -qx 'pilot_node_registered 1'; }
if pt_wait 20 registered; then pt_pass installed_pilotd_registers; else
	pt_fail installed_pilotd_registers; tail -n 20 "$PT_DIR/pilotd.log"; fi
# pt_spawn's PID is pilotd's: ip netns exec, sh, setpriv and sh each exec the next.
pt_check runs_as_pilot_user bash -c "[ \$(stat -c %u /proc/$DPID) = $PUID ] && grep -q pilotd /proc/$DPID/comm"
pt_check only_unit_capabilities bash -c "grep -q '^CapEff:.*0000000000001400$' /proc/$DPID/status"
pt_check tun_up_unprivileged bash -c "ip -n $PT-node -4 addr show dev pilot0 | grep -q 'inet 10.4.0.1/16'"
pt_check dns_on_port_53 bash -c "ip netns exec $PT-node ss -Huln 'sport = :53' | grep -q 10.4.0.1"
pt_check identity_in_state_dir bash -c "[ \$(stat -c %u $ROOT/var/lib/pilot/identity.json) = $PUID ]"
status_ok() { nsenter -t "$DPID" -m -n "$ROOT/usr/bin/pilotctl" status | tee "$PT_DIR/status.txt" \
	| grep -q '^registry .*connected, registered'; }
pt_check pilotctl_status_through_run_pilot status_ok
# pilot-nameserver from its shipped config, as its unit runs it: pilotd's user,
# only CAP_NET_BIND_SERVICE, in pilotd's mount namespace (its /run/pilot and
# /var/lib/pilot); it serves Pilot port 53 on the TUN address and answers
# pilotctl on the node (local TCP to 10.4.0.1:53).
NSCONF=$ROOT/etc/pilot/pilot-nameserver.json
pt_spawn node "$PT_DIR/nameserver.log" nsenter -t "$DPID" -m -- setpriv --reuid="$PUID" --regid="$PGID" \
	--clear-groups --no-new-privs --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
	--bounding-set=-all,+net_bind_service "$ROOT/usr/sbin/pilot-nameserver" -config "$NSCONF"
NSPID=$PT_PID
pt_check installed_nameserver_listens pt_wait 10 bash -c "ip netns exec $PT-node ss -Htln 'sport = :53' | grep -q 10.4.0.1"
NODE_ID=$(nsenter -t "$DPID" -m -n "$ROOT/usr/bin/pilotctl" --json info | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["node_id"])')
ns_ok() {
	nsenter -t "$DPID" -m -n "$ROOT/usr/bin/pilotctl" name-register pkg-test --nameserver "$NODE_ID" >/dev/null &&
		nsenter -t "$DPID" -m -n "$ROOT/usr/bin/pilotctl" --json resolve pkg-test --nameserver "$NODE_ID" \
			| grep -q '"address"'
}
pt_check installed_nameserver_answers ns_ok
pt_check nameserver_store_in_state_dir bash -c "[ \$(stat -c %u $ROOT/var/lib/pilot/nameserver.json) = $PUID ]"
pt_stop "$NSPID"
pt_check socket_mode_0600 bash -c "[ \"\$(nsenter -t $DPID -m stat -c '%a %u' /run/pilot/pilotd.sock)\" = '600 $PUID' ]"
# DEPLOY.md's backup command, on the live store (SQLite online backup)
STORE=$ROOT/var/lib/pilot-rendezvous/registry.db
backup_ok() {
	"$PY" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
		"$STORE" "$PT_DIR/registry-backup.db" || return 1
	"$PY" -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
assert db.execute("SELECT count(*) FROM nodes").fetchone()[0] >= 1' "$PT_DIR/registry-backup.db"
}
pt_check store_backup_online pt_wait 5 backup_ok
pt_stop "$DPID"
pt_stop "$RPID"

# ---- purge ----
PATH=$PT_DIR/stub:$PATH dpkg --root="$ROOT" --force-script-chrootless --force-depends \
	--purge pilot pilot-rendezvous >"$PT_DIR/purge.log" 2>&1
pt_check purge_removes_conffiles bash -c "[ ! -e $CONF ] && [ ! -e $RCONF ] && ! dpkg --root=$ROOT -l pilot 2>/dev/null | grep -q '^ii'"
exit 0
