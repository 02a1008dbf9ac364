#!/bin/bash
# Task submit (port 1003) in namespaces: the full submit -> accept -> execute ->
# send-results cycle between A (submitter) and B (receiver) with the status
# seen on both sides, the results file, the polo-score reward and then the
# polo-score refusal; and each weakness of the reference (services.md §8.2
# NOTE) closed, by a third node C that sends raw frames: a SUBMIT whose
# from_addr names A is recorded as coming from C; a task_id with "../" is
# refused and writes nothing; a STATUS_UPDATE for A's task from C changes
# nothing; SEND_RESULTS with "../" in task_id or filename, for an unknown task,
# or for A's real task from C writes no file. Also pilotctl received / inbox
# (list, --clear), and the queue-head expiry (A runs -test-task-expiry 4s):
# staged_at is set when a task becomes the head, the head expires on both
# sides and costs A a polo point, the next task becomes head. Prints
# PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init tasks

pd_lan a b c || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
ok=1
pd_start a a -test-task-expiry 4s || ok=0
for n in b c; do pd_start $n $n || ok=0; done
if [ $ok = 1 ]; then pt_pass three_nodes_registered; else pt_fail three_nodes_registered; exit 1; fi
pt_check trust_a_b pd_trust_pair a b
pt_check trust_c_a pd_trust_pair c a
pt_check trust_c_b pd_trust_pair c b

eq() { # NAME GOT WANT
	if [ -n "$2" ] && [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2' want '$3'"; fi
}

# raw FROM TO TYPE JSON: one port-1003 frame from FROM's daemon (connect with
# binary data, half-close), prints the control reply.
raw() {
	python3 - "$PT_DIR/$1/ctl.sock" "${PD_ID[$2]}" "$3" "$4" <<'PY'
import base64, json, socket, struct, sys
sock, target, typ, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
frame = struct.pack(">II", typ, len(payload)) + payload
req = {"cmd": "connect", "args": {"target": target, "port": 1003, "half_close": True, "timeout_ms": 5000,
       "data_b64": base64.b64encode(frame).decode()}}
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
b = json.dumps(req).encode()
s.sendall(struct.pack(">I", len(b)) + b)
def rd(n):
    d = b""
    while len(d) < n:
        x = s.recv(n - len(d))
        if not x:
            break
        d += x
    return d
n = struct.unpack(">I", rd(4))[0]
print(rd(n).decode())
PY
}
status_of() { pd_ctl "$1" task status "$2" | pd_json 'd["status"]'; }
tid() { python3 -c 'import uuid; print(str(uuid.uuid4()))'; }

# ---- submit ----
out=$(pd_ctl a task submit "${PD_ID[b]}" --task "add 2 and 2")
T=$(echo "$out" | pd_json 'd["accepted"] and d["task_id"]')
if [ -n "$T" ]; then pt_pass submit_accepted; else pt_fail submit_accepted "$out"; fi
eq submitter_sees_new "$(status_of a "$T")" NEW
eq receiver_from_is_submitter "$(pd_ctl b task status "$T" | pd_json 'd["from"]')" \
	"$(pd_ctl a info | pd_json 'd["address"]')"
pt_check task_file_written test -f "$PT_DIR/b/tasks/received/$T.json"

# ---- fixed weaknesses (each asserts the opposite of the reference's behaviour) ----
S=$(tid)
aaddr=$(pd_ctl a info | pd_json 'd["address"]')
caddr=$(pd_ctl c info | pd_json 'd["address"]')
raw c b 1 "{\"task_id\":\"$S\",\"task_description\":\"spoof\",\"from_addr\":\"$aaddr\",\"to_addr\":\"x\"}" >/dev/null
eq from_is_tunnel_node_not_from_addr "$(pd_ctl b task status "$S" | pd_json 'd["from"]')" "$caddr"

out=$(raw c b 1 '{"task_id":"../../../evil","task_description":"x","from_addr":"","to_addr":""}')
if echo "$out" | grep -q '400' && [ ! -e "$PT_DIR/evil.json" ] && ! ls "$PT_DIR"/b/tasks/received | grep -qv '^[0-9a-f-]*\.json$'; then
	pt_pass submit_dotdot_task_id_refused
else
	pt_fail submit_dotdot_task_id_refused "$out"
fi

raw c a 3 "{\"task_id\":\"$T\",\"status\":\"ACCEPTED\",\"justification\":\"forged\"}" >/dev/null
sleep 0.5
eq status_update_from_third_node_ignored "$(status_of a "$T")" NEW

raw c a 4 '{"task_id":"../../../../evil","result_type":"file","filename":"keys","file_data":"aGk=","completed_at":"2026-01-01T00:00:00Z"}' >/dev/null
raw c a 4 "{\"task_id\":\"$T\",\"result_type\":\"file\",\"filename\":\"../../../evil2.txt\",\"file_data\":\"aGk=\",\"completed_at\":\"2026-01-01T00:00:00Z\"}" >/dev/null
raw c a 4 "{\"task_id\":\"$(tid)\",\"result_type\":\"text\",\"result_text\":\"unknown\",\"completed_at\":\"2026-01-01T00:00:00Z\"}" >/dev/null
raw c a 4 "{\"task_id\":\"$T\",\"result_type\":\"text\",\"result_text\":\"forged\",\"completed_at\":\"2026-01-01T00:00:00Z\"}" >/dev/null
sleep 0.5
found=$(find "$PT_DIR" -name '*evil*' -o -path '*results*' -type f | tr '\n' ' ')
if [ -z "$found" ] && [ "$(status_of a "$T")" = NEW ]; then
	pt_pass results_traversal_unknown_and_third_node_refused
else
	pt_fail results_traversal_unknown_and_third_node_refused "files: $found status $(status_of a "$T")"
fi
if grep -q "results for a task we did not submit" "$PT_DIR/a.log" &&
	grep -q "results from a node that is not the task's receiver" "$PT_DIR/a.log"; then
	pt_pass refusals_logged
else
	pt_fail refusals_logged
fi

# ---- the cycle ----
out=$(pd_ctl b task accept "$T")
if echo "$out" | pd_json 'd["notified"] and d["status"] == "ACCEPTED"' >/dev/null; then pt_pass accept_notified; else pt_fail accept_notified "$out"; fi
eq submitter_sees_accepted "$(status_of a "$T")" ACCEPTED
out=$(pd_ctl b task execute)
eq execute_takes_head "$(echo "$out" | pd_json 'd["task_id"]')" "$T"
eq submitter_sees_executing "$(status_of a "$T")" EXECUTING
sleep 1
out=$(pd_ctl b task send-results "$T" --results "4")
if echo "$out" | pd_json 'd["notified"] and d["status"] == "SUCCEEDED"' >/dev/null; then pt_pass send_results; else pt_fail send_results "$out"; fi
eq submitter_sees_completed "$(status_of a "$T")" COMPLETED
eq results_file "$(cat "$PT_DIR/a/tasks/results/${T}_result.txt" 2>/dev/null)" 4
out=$(pd_ctl b task send-results "$T" --results "again")
if echo "$out" | grep -q invalid_argument; then pt_pass results_only_once; else pt_fail results_only_once "$out"; fi

# ---- polo score: the reward went through the registry; now A's score is below B's ----
pt_check polo_receiver_rewarded pd_wait 5 bash -c "$PD_CTL --json --socket $PT_DIR/a/ctl.sock polo-score ${PD_ID[b]} | grep -q '\"polo_score\":[1-9]'"
eq polo_submitter_charged "$(pd_ctl a polo-score | pd_json 'str(d["polo_score"])')" -1
out=$(pd_ctl a task submit "${PD_ID[b]}" --task "again")
if echo "$out" | pd_json 'd["status"] == 400 and "Polo score too low" in d["message"]' >/dev/null; then
	pt_pass polo_score_too_low_refused
else
	pt_fail polo_score_too_low_refused "$out"
fi

# ---- decline (C's score 0 >= A's -1) and list ----
out=$(pd_ctl c task submit "${PD_ID[a]}" --task "decline me")
D=$(echo "$out" | pd_json 'd["accepted"] and d["task_id"]')
pd_ctl a task decline --id "$D" --justification "busy" >/dev/null
eq decline_seen_by_submitter "$(status_of c "$D")" DECLINED
eq decline_justification "$(pd_ctl c task status "$D" | pd_json 'd["status_justification"]')" busy
# ---- the queue head expires (A: -test-task-expiry 4s) ----
X1=$(pd_ctl c task submit "${PD_ID[a]}" --task "expire me" | pd_json 'd["accepted"] and d["task_id"]')
X2=$(pd_ctl c task submit "${PD_ID[a]}" --task "next in line" | pd_json 'd["accepted"] and d["task_id"]')
pd_ctl a task accept "$X1" >/dev/null
pd_ctl a task accept "$X2" >/dev/null
staged() { pd_ctl a task status "$1" | pd_json 'd.get("staged_at") or "none"'; }
s1=$(staged "$X1")
eq head_staged_at_set_not_second "$([ "$s1" != none ] && staged "$X2")" none
status_is() { [ "$(status_of "$1" "$2")" = "$3" ]; }
pt_check head_expired pd_wait 10 status_is a "$X1" EXPIRED
pt_check expired_seen_by_submitter pd_wait 5 status_is c "$X1" EXPIRED
s2=$(staged "$X2")
if [ "$s2" != none ] && [ "$(status_of a "$X2")" = ACCEPTED ] && [[ "$s2" > "$s1" ]]; then
	pt_pass next_task_staged_when_head
else
	pt_fail next_task_staged_when_head "X1 staged $s1, X2 staged $s2 status $(status_of a "$X2")"
fi
polo_below() { [ "$(pd_ctl a polo-score | pd_json 'str(d["polo_score"])')" -le "$1" ]; }
pt_check expiry_costs_receiver_polo pd_wait 5 polo_below -2

eq list_received "$(pd_ctl b task list --type received | pd_json 'str(len(d["tasks"]))')" 2

# ---- pilotctl received / inbox (what data exchange, port 1001, stored) ----
echo "file-body-$$" >"$PT_DIR/hello-$$.txt"
pd_ctl a send-file "${PD_ID[b]}" "$PT_DIR/hello-$$.txt" >/dev/null
pd_ctl a send-message "${PD_ID[b]}" --data "inbox-msg-$$" >/dev/null
pt_check received_lists_file pd_wait 5 bash -c "$PD_CTL --socket $PT_DIR/b/ctl.sock received | grep -q 'hello-$$-.*\.txt'"
pt_check inbox_lists_message pd_wait 5 bash -c "$PD_CTL --socket $PT_DIR/b/ctl.sock inbox | grep -q 'inbox-msg-$$'"
eq inbox_json_from "$(pd_ctl b inbox | pd_json 'd["messages"][0]["from"]')" "$aaddr"
eq received_clear "$(pd_ctl b received --clear | pd_json 'str(d["cleared"])')" 1
eq inbox_clear "$(pd_ctl b inbox --clear | pd_json 'str(d["cleared"])')" 1
pt_check received_empty_after_clear bash -c "$PD_CTL --socket $PT_DIR/b/ctl.sock received | grep -q 'no files received'"

# ---- restart keeps the tasks ----
pd_restart b >/dev/null
eq restart_keeps_tasks "$(status_of b "$T")" SUCCEEDED

for n in a b c; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
exit 0
