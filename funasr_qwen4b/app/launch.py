"""`python -m funasr_qwen4b.app.launch`: `mlx.launch`, with the same arguments, whose exit status
says whether every rank succeeded.

mlx.launch (0.32) stops the other ranks when one ends with a failure but itself exits 0, so a
script or a CI job cannot tell a failed run from a good one. This runs mlx.launch's own code,
notes how each rank ended, and exits with the status of the rank that failed on its own (128 + N
for signal N, as a shell does): the ranks the launcher then stopped are not the failure, and a
rank killed by a signal comes before one that ended with a status (maybe for losing that peer),
else the first to end. One line, in place of mlx.launch's warnings, names that rank, its host,
how it ended and the ranks stopped; but for rank 0's status 1, which is the command's own
outcome (an input failed, or a check), said by the command itself."""

from __future__ import annotations

import signal
import sys

PROG = "funasr_qwen4b.app.launch"  # as it is run: python -m funasr_qwen4b.app.launch
LOCAL = "127.0.0.1"  # the host mlx.launch runs without ssh
SSH_FAILED = 255  # ssh's status when it cannot connect or log in (mlx.launch quiets its message)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _how(returncode: int, host: str) -> str:
    if returncode == SSH_FAILED and host != LOCAL:
        return f"exited with status {SSH_FAILED}, ssh's own failure: check that `ssh {host}` logs in from here " \
               f"without a password, and that the host is up"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def main(argv: list[str] | None = None) -> int:
    from mlx._distributed_utils import launch

    ended: list[tuple[int, str, int]] = []  # (rank, host, returncode) of the ranks that failed on their own
    stopped: list[int] = []  # the ranks the launcher stopped
    base, warn = launch.RemoteProcess, launch.log_warning

    class Noted(base):
        def __init__(self, rank, host, *args, **kwargs):
            super().__init__(rank, host, *args, **kwargs)
            self.rank, self.host, self.stopped = rank, host, False

        def terminate(self):
            if not self.stopped:  # by the launcher, because another rank failed
                self.stopped = True
                stopped.append(self.rank)
            super().terminate()

        @property
        def exit_status(self):
            code, killed = super().exit_status
            if code is not None and code != 0 and not self.stopped and (self.rank, self.host, code) not in ended:
                ended.append((self.rank, self.host, code))
            return code, killed

    def quieter(*args, **kwargs):  # how each rank ended is said below, once
        if not (args and str(args[0]).startswith("Node with rank")):
            warn(*args, **kwargs)

    launch.RemoteProcess, launch.log_warning = Noted, quieter
    saved = sys.argv
    sys.argv = [PROG, *(sys.argv[1:] if argv is None else argv)]
    try:
        launch.main()
    finally:
        launch.RemoteProcess, launch.log_warning, sys.argv = base, warn, saved
    if not ended:
        return 0
    # A rank killed by a signal goes first: a rank that ended with a status may have lost that peer.
    rank, host, code = min(ended, key=lambda e: e[2] >= 0)
    if (rank, code) != (0, 1):  # rank 0's 1 is the command's own outcome (an input failed), said in its summary
        print(f"{PROG}: rank {rank} on {host} {_how(code, host)}"
              + (f"; stopped rank{'s' * (len(stopped) > 1)} {', '.join(map(str, sorted(stopped)))}" if stopped else ""),
              file=sys.stderr, flush=True)
    return _status(code)


if __name__ == "__main__":
    sys.exit(main())
