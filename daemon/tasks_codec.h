/* Task submit (port 1003, services.md §8) wire pieces, pure (buf, len): the
 * frame header, what a peer-supplied task ID, status and result file name may
 * be, and the polo-score reward. Everything a peer sends passes through here
 * before it is used; nothing a peer sends becomes a path except through
 * ts_task_id_ok (fixed UUID-like shape) and ts_result_name (a safe base name
 * with an allowed extension). */
#ifndef PILOT_TASKS_CODEC_H
#define PILOT_TASKS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_PORT        1003
#define TS_HDR         8
#define TS_MAX_FRAME   (1u << 24) /* the reference's bound */
#define TS_ID_LEN      36
#define TS_NAME_MAX    128

enum ts_type { TS_SUBMIT = 1, TS_RESULT = 2, TS_STATUS = 3, TS_SEND_RESULTS = 4 };

/* [u32 type][u32 length]: 0, -EAGAIN (fewer than 8 bytes), -EMSGSIZE (length
 * over max, which is at most TS_MAX_FRAME), -EPROTO (unknown type). */
int ts_frame_hdr(const uint8_t *p, size_t len, uint32_t max, uint32_t *type, uint32_t *plen);
void ts_frame_put(uint8_t hdr[TS_HDR], uint32_t type, uint32_t plen);
/* 8-4-4-4-12 lowercase hex, exactly. */
bool ts_task_id_ok(const char *s);
/* A fresh one from 16 random bytes. */
void ts_task_id_new(char out[TS_ID_LEN + 1]);
/* One of the eight statuses. */
bool ts_status_ok(const char *s);
/* May a receiver move a task from status `from` to `to` (what a STATUS_UPDATE
 * may say)? NEW -> ACCEPTED | DECLINED | CANCELLED, ACCEPTED -> EXECUTING |
 * EXPIRED | CANCELLED; nothing else. */
bool ts_transition_ok(const char *from, const char *to);
/* A peer's result file name as a safe base name (no separator, no leading
 * '.', no control byte, at most TS_NAME_MAX bytes) whose extension is on the
 * reference's allow-list. 0, -EINVAL or -EPERM (extension not allowed). */
int ts_result_name(const char *in, char out[TS_NAME_MAX + 1]);
/* services.md §8.2 reward for timings in ms. */
int ts_reward(int64_t idle_ms, int64_t staged_ms, int64_t cpu_ms);

#endif
