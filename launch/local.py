#!/usr/bin/env python
r"""Run a ``vlm-jax`` command as N processes on this machine (Gloo collectives over localhost): the
multi-host code path, for real, without a cluster.

    python launch/local.py --processes=2 --devices_per_process=2 -- \
        train --config=configs/tiny_entitygrid.py --workdir=/tmp/vlm_jax_2proc

Each process sees ``--devices_per_process`` CPU devices; process 0 writes the metrics and logs. The launcher
fails (non-zero exit) as soon as any process fails, and kills the others.
"""

import argparse
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before every process is killed")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the vlm-jax subcommand and its flags")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the vlm-jax command after --")
    port = free_port()
    procs = []
    for i in range(args.processes):
        env = dict(os.environ, JAX_PLATFORMS="cpu", VLM_JAX_COORDINATOR=f"127.0.0.1:{port}",
                   VLM_JAX_NUM_PROCESSES=str(args.processes), VLM_JAX_PROCESS_ID=str(i),
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices_per_process}")
        procs.append(subprocess.Popen([sys.executable, "-m", "vlm_jax.cli", *command], env=env))
    deadline = time.monotonic() + args.timeout
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            print(f"launch/local.py: process exit codes {codes}" + (" (timeout)" if not failed else ""),
                  file=sys.stderr)
            return failed[0] if failed else 124
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
