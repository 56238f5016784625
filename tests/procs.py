"""Real processes for the tests whose point is a process (batches and direct payouts at
once on one ledger, SIGKILL in the middle of a batch), without a new interpreter and the
claims stack's imports for each: they are forked from a server process that imported the
stack once (multiprocessing's forkserver, preloaded). Each is a process of its own (its
own pid, memory, ledger connections, exit code; SIGKILL ends it as it ends any), started
in the caller's environment and folder, its stdout and stderr read as a subprocess's. A
`python -m puhui` process (the interpreter's start, the console entry point) is
tests/test_cli.py's and tests/test_bad_inputs.py's. Saves about 1.5 s of CPU a process
(`claims run` of a small city: 3 s of CPU from a new interpreter)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

#: What the server imports once (what `claims run`, `claims direct` and a batch import).
PRELOAD = ["pandas", "pyarrow", "openpyxl", "matplotlib", "matplotlib.figure",
           "puhui.cli", "puhui.claims.batch", "puhui.claims.direct", "puhui.claims.report",
           "puhui.claims.ledger", "puhui.excel", "puhui.reporting", "tests.procs"]

_CONTEXT: list = []


def _context():
    if not _CONTEXT:
        root = str(Path(__file__).resolve().parents[1])      # `tests.procs` importable there
        if root not in sys.path:
            sys.path.insert(0, root)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CONTEXT.append(ctx)
    return _CONTEXT[0]


def _child(fn, args, env, cwd, out, err):
    """In the forked process: the caller's environment and folder, stdout and stderr to
    where the caller reads them (a file's path, or the write end of a pipe), then
    ``fn(*args)``; an exit code as a process's (``sys.exit(n)``: n; an exception: 1,
    its traceback on stderr)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, to in ((1, out), (2, err)):
        if isinstance(to, str):
            f = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        else:
            os.dup2(to.fileno(), fd)
            to.close()
    fn(*args)


class Proc:
    """``fn(*args)`` in a new process (see the module); a small part of
    ``subprocess.Popen``: pid, stdout (``stdout="stream"``: its lines as they come),
    poll, wait, communicate, returncode, kill. ``stdout``/``stderr``: "capture" (read
    by communicate), "stream" (stdout only) or None (/dev/null)."""

    def __init__(self, fn, *args, stdout="capture", stderr="capture", env=None, cwd=None):
        ctx = _context()
        self._dir = tempfile.mkdtemp(prefix="proc-")
        self._modes = (stdout, stderr)
        self.stdout = None
        to, pipe = [], None
        for name, mode in (("out", stdout), ("err", stderr)):
            if mode == "capture":
                to.append(os.path.join(self._dir, name))
            elif mode == "stream" and name == "out":
                pipe = ctx.Pipe(duplex=False)
                to.append(pipe[1])
            elif mode is None:
                to.append(os.devnull)
            else:
                raise ValueError(f"{name}: {mode!r}")
        self._p = ctx.Process(target=_child, args=(
            fn, args, dict(os.environ if env is None else env), str(cwd or os.getcwd()), *to))
        self._p.start()
        self.pid = self._p.pid
        if pipe is not None:
            pipe[1].close()                    # the child's end: EOF when the child is gone
            self.stdout = open(os.dup(pipe[0].fileno()), "r", encoding="utf-8")
            pipe[0].close()

    @property
    def returncode(self):
        return self._p.exitcode

    def poll(self):
        return self._p.exitcode

    def wait(self, timeout=None):
        self._p.join(timeout)
        if self._p.exitcode is None:
            raise subprocess.TimeoutExpired(f"process {self.pid}", timeout)
        return self._p.exitcode

    def communicate(self, timeout=None):
        """Wait for the end; (stdout, stderr) as text (None for what is not captured)."""
        self.wait(timeout)
        texts = tuple((Path(self._dir, n).read_text(encoding="utf-8", errors="replace")
                       if Path(self._dir, n).exists() else "") if mode == "capture" else None
                      for n, mode in zip(("out", "err"), self._modes))
        shutil.rmtree(self._dir, ignore_errors=True)
        return texts

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)


def cli(*argv):
    """``puhui ARGV`` as the console entry runs it (``puhui.cli.main``: its exit code)."""
    from puhui.cli import main

    main([str(a) for a in argv])


def puhui(*argv, **kw) -> Proc:
    """``puhui ARGV`` in a new process (:func:`cli`)."""
    return Proc(cli, *argv, **kw)


def script(source: str, *argv):
    """``python -c SOURCE ARGV...``: the source run as ``__main__``, ``sys.argv`` as
    ``-c`` gives it."""
    sys.argv = ["-c", *map(str, argv)]
    exec(compile(source, "<string>", "exec"), {"__name__": "__main__"})


def python_c(source: str, *argv, **kw) -> Proc:
    """``python -c SOURCE ARGV...`` in a new process (:func:`script`)."""
    return Proc(script, source, *argv, **kw)
