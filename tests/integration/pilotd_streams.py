#!/usr/bin/env python3
"""Helpers for pilotd_streams.sh.

  call SOCK CMD ARGS_JSON [SECS]  one control request; prints the final reply as
                                  JSON with the streamed items under "stream_items"
  pattern-sha BYTES               SHA-256 of the test pattern (byte i = i % 251)
"""
import json
import sys

import ctlsock


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "call":
        try:
            path, verb, args_json = args[:3]
            secs = args[3] if len(args) > 3 else 60.0
            print(json.dumps(ctlsock.call(path, verb, json.loads(args_json), secs)))
        except (OSError, EOFError) as e:
            print(json.dumps({"status": "error", "code": "client", "message": str(e)}))
            sys.exit(1)
    elif cmd == "pattern-sha":
        print(ctlsock.pattern_sha(int(args[0])))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
