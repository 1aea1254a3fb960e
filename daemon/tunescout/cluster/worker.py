"""`tunescout worker SCHEDULER`: lend this machine's cores to a tunescout server through Dask.

It is Dask's own worker command (`dask worker`), so its nanny restarts a worker process that
dies: one worker process per core (or `--nworkers`), one thread each, because each process
runs one analysis child at a time through its own zygote. The path map travels to the worker
processes in their environment.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from tunescout.cluster.paths import ENV_VAR, PathMap


def worker_argv(scheduler: str, nworkers: int, name: str | None) -> list[str]:
    """Return the `dask worker` command line for these options."""
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler,
            "--nworkers", str(nworkers), "--nthreads", "1", "--no-dashboard"]
    if name:
        argv += ["--name", name]
    return argv


def run_worker(scheduler: str, path_map: list[str], nworkers: int | None, name: str | None) -> str:
    """Replace this process with Dask's worker; return why not when it cannot start."""
    if importlib.util.find_spec("distributed") is None:
        return "Dask is not installed here: pip install 'tunescout[cluster]'"
    try:
        mapping = PathMap.parse(path_map)
    except ValueError as exc:
        return str(exc)
    for server, local in mapping.pairs:
        if not local.is_dir():
            return f"--path-map {server}={local}: {local} is not a folder on this machine"
    env = dict(os.environ)
    env[ENV_VAR] = mapping.to_env()
    argv = worker_argv(scheduler, nworkers or os.cpu_count() or 1, name)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return "unreachable"  # pragma: no cover
