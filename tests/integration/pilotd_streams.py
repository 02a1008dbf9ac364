#!/usr/bin/env python3
"""Helpers for pilotd_streams.sh.

  call SOCK CMD ARGS_JSON [SECS]  one control request; prints the final reply as
                                  JSON with the streamed items under "stream_items"
  pattern-sha BYTES               SHA-256 of the test pattern (byte i = i % 251)
"""
import json
import sys

import ctlsock


def call(path, cmd, args, secs=60.0):
    """args as JSON text (also imported by pilotd_webhook.sh, pilotd_pg_failover.sh)."""
    return ctlsock.call(path, cmd, json.loads(args), secs)


def pattern_sha(n):
    return ctlsock.pattern_sha(int(n))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "call":
        try:
            print(json.dumps(call(*args)))
        except (OSError, EOFError) as e:
            print(json.dumps({"status": "error", "code": "client", "message": str(e)}))
            sys.exit(1)
    elif cmd == "pattern-sha":
        print(pattern_sha(args[0]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
