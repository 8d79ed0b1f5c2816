"""Runs the media offload's tc program (gateway/datapath/offload_bpf.py) on
frames in the kernel, inside the network namespace it is started in (the
program asks that namespace's routes and neighbours for the next hop).

stdin: one JSON object, ``{"flows": [[key_hex, head_hex, mark, dscp,
priority], ...], "frames": [[frame_hex, ingress_device], ...]}``; stdout:
``{"runs": [[return_code, frame_hex, mark, priority], ...], "counters":
{key_hex: [packets, bytes]}}``. Used by tests/test_offload_bpf_program.py."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors import bpf_sys  # noqa: E402
from actors.kernel_media_bpf import read_counts  # noqa: E402
from gateway.datapath.offload_bpf import KEY, VALUE, flow_value, program  # noqa: E402


def main() -> int:
    job = json.load(sys.stdin)
    map_fd = bpf_sys.create_hash_map(KEY.size, VALUE.size, 64, b"probe")
    prog_fd = bpf_sys.load_program(program(map_fd), b"probe")
    for key, head, mark, dscp, priority in job["flows"]:
        bpf_sys.update(map_fd, bytes.fromhex(key), flow_value(bytes.fromhex(head), mark, dscp, priority))
    runs = []
    for frame, dev in job["frames"]:
        run = bpf_sys.test_run(prog_fd, bytes.fromhex(frame), socket.if_nametoindex(dev))
        runs.append([run.rc, run.frame.hex(), run.mark, run.priority])
    counts = {k.hex(): list(v) for k, v in read_counts(map_fd).items()}
    os.close(prog_fd)
    os.close(map_fd)
    json.dump({"runs": runs, "counters": counts}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
