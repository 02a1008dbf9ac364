#!/bin/bash
# A 64 MiB Pilot stream between two trusted pilotd nodes with random loss on the
# underlay: 0, 1, 5 and 20 % of the packets arriving on each node's eth0 (both
# directions) are dropped. The reader hashes what arrives (hidden verbs
# test-source / test-sink, pattern bytes i % 251) and the SHA-256 must match;
# plus a 16 MiB - 4 KiB send-file (one data-exchange frame carries at most 16 MiB) at 5 % loss, hashed
# on disk. Each transfer has a finite bound well above its measured time (the
# PASS line reports the time). Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
ST=tests/integration/pilotd_streams.py

pd_init streamloss

pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
# A veth carries a UDP GSO super-packet (up to 64 datagrams) whole, so the loss
# rule (pt_loss: on arrival) would judge a whole group at once. These transfers
# test the streams' recovery from independent losses, hence one datagram per
# send (-udp-gso=false) so that each datagram meets the nominal rate.
pd_start a a -udp-gso=false && pd_start b b -udp-gso=false || { pt_fail nodes_registered; exit 1; }
pt_check trust_pair pd_trust_pair a b
pt_check first_ping pd_wait 10 pd_ping_ok a b

call() { # node cmd args_json [secs]
	python3 "$ST" call "$PT_DIR/$1/ctl.sock" "$2" "$3" "${4:-60}"
}
B=${PD_ID[b]}
lossy() {
	pt_loss a eth0 "$1"
	pt_loss b eth0 "$1"
}
clear_loss() {
	pt_loss_clear a
	pt_loss_clear b
}

SIZE=$((64 << 20))
WANT=$(python3 "$ST" pattern-sha $SIZE)
# Bounds in seconds (ASan build; both nodes and the loss rules share one host).
declare -A BOUND=([0]=20 [1]=30 [5]=40 [20]=90)
port=6000
for loss in 0 1 5 20; do
	port=$((port + 1))
	[ "$loss" -gt 0 ] && lossy "$loss"
	call b test-sink "{\"port\":$port,\"timeout_ms\":$((BOUND[$loss] * 1000 + 5000))}" \
		$((BOUND[$loss] + 10)) > "$PT_DIR/sink$loss.json" &
	SINK=$!
	sleep 0.5
	src=$(call a test-source "{\"target\":\"$B\",\"port\":$port,\"bytes\":$SIZE,\"timeout_ms\":$((BOUND[$loss] * 1000))}" \
		$((BOUND[$loss] + 10)))
	wait $SINK
	clear_loss
	ms=$(echo "$src" | pd_json 'int(d["duration_ms"])')
	retx=$(echo "$src" | pd_json 'd["stats"]["retransmits"]')
	if [ "$(pd_json 'd["sha256"]' < "$PT_DIR/sink$loss.json")" = "$WANT" ] && [ -n "$ms" ] \
		&& [ "$ms" -le $((BOUND[$loss] * 1000)) ]; then
		pt_pass "stream_64MiB_loss_${loss}pct_sha256_ok_in_${ms}ms_retx_${retx}"
	else
		pt_fail "stream_64MiB_loss_${loss}pct" "src=$src sink=$(cat "$PT_DIR/sink$loss.json")"
	fi
done

# send-file through the data exchange service at 5 % loss (bound 60 s); one frame
# carries at most 16 MiB including the name
head -c $(((16 << 20) - 4096)) /dev/urandom > "$PT_DIR/lossy.bin"
lossy 5
t0=$(date +%s%N)
r=$(pd_ctl a send-file "$B" "$PT_DIR/lossy.bin" --timeout 60s)
ms=$((($(date +%s%N) - t0) / 1000000))
clear_loss
f=$(ls "$PT_DIR"/b/received/lossy-*.bin 2>/dev/null | head -n1)
if echo "$r" | pd_json 'd["ack"].startswith("ACK")' >/dev/null && [ -n "$f" ] \
	&& [ "$(sha256sum < "$f")" = "$(sha256sum < "$PT_DIR/lossy.bin")" ]; then
	pt_pass "send_file_16MiB_loss_5pct_sha256_ok_in_${ms}ms"
else
	pt_fail send_file_16MiB_loss_5pct "$ms ms: $r"
fi

pt_check ping_after_loss pd_ping_ok a b 2
pd_stop a
pd_stop b
pt_check no_sanitizer_reports bash -c "! grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error' $PT_DIR/a.log $PT_DIR/b.log"
