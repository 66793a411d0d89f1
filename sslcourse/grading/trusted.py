"""The trusted side of grading: runs the lab's tests against a submission that runs elsewhere.

``python -m sslcourse.grading.trusted JOB.json VERDICT.json`` grades one submission:

1. it starts the submission's sandbox (:mod:`sslcourse.grading.worker` under
   :mod:`sslcourse.grading.sandbox`), which runs the lab's context cells and the
   student's cells, each with a time limit; a cell that hangs or kills its process is
   skipped when the sandbox restarts, so the other exercises keep their chance;
2. in *this* process, which never runs a line of the student's code, it runs the
   lab's context cells (imports, the test helpers) from the instructor's copy and
   binds each function the student must write to a :class:`RemoteFunction`: a
   proxy that sends the arguments to the sandbox, calls the student's function
   there, and brings back its result (plain tensors and values, and networks rebuilt
   from torch.nn layers), what it changed in its arguments (in-place updates,
   generators' states), and gradients on demand (``backward`` through the call);
3. it runs every graded test cell, visible and hidden checks alike, with a
   wall-clock limit per test, and records pass or fail with the test's own message.

Since the checks, the helpers, torch and numpy of this process are beyond the
student's reach, rebinding or patching them in a solution cell changes nothing here;
the sandbox reports such attempts, calls of the package's own version of a graded
function, and attempts to open the instructor's files or the network, as flags.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import protocol
from .sandbox import Limits, apply_limits, sandbox_command, sandbox_environment

#: Exceptions of the student's that the tests may catch by type; any other becomes a RuntimeError.
PASSED_THROUGH = {e.__name__: e for e in (ValueError, TypeError, RuntimeError, IndexError, KeyError, NotImplementedError,
                                          ZeroDivisionError, AssertionError, NameError, AttributeError, OverflowError,
                                          ArithmeticError, LookupError, UnboundLocalError, RecursionError)}
MEMORY_SIGNS = ("MemoryError", "can't allocate memory", "DefaultCPUAllocator", "out of memory", "Cannot allocate memory")


class GradingInterrupt(BaseException):
    """Ends a test as failed, whatever the test's code catches (it derives from BaseException, like KeyboardInterrupt)."""

    status = "failed"


class SandboxTimeout(GradingInterrupt):
    status = "timeout"


class SandboxCrashed(GradingInterrupt):
    status = "crashed"


class BorrowedReferenceUsed(GradingInterrupt):
    status = "borrowed"


class UnsupportedResult(GradingInterrupt):
    status = "failed"


class TestTimeout(GradingInterrupt):
    status = "timeout"


class GraderError(BaseException):
    """The grading machinery failed before any code of the student's ran (the sandbox cannot start, a cell of the lab
    fails in it): no verdict, since a zero would blame the student for the grader."""


class _Dead(Exception):
    pass


class _Late(Exception):
    pass


# ------------------------------------------------------------------ the sandbox session
class Session:
    """One submission's sandbox: started, restarted after a crash or a hang, called, closed."""

    def __init__(self, cells: list[dict], *, references: list[str], workdir: Path, isolation: str, limits: Limits,
                 watched_prefixes: list[str]) -> None:
        self.cells = [c for c in cells if c["kind"] in ("context", "solution", "extra")]
        self.references, self.workdir, self.isolation, self.limits = references, workdir, isolation, limits
        self.watched_prefixes = watched_prefixes
        self.skip: set[str] = set()
        self.cell_reports: dict[str, dict] = {}
        self.proc: subprocess.Popen | None = None
        self.buffer = b""
        self.flags: dict[str, list[str]] = {}
        self.starts = 0
        self.defined: list[str] = []
        self.busy = False
        self.launched = False
        self.student_started = False
        self.context_keys = {c["key"] for c in self.cells if c["kind"] == "context"}

    # ---- process
    def _spawn(self) -> None:
        self.buffer = b""
        self.proc = subprocess.Popen(
            sandbox_command(self.workdir, isolation=self.isolation), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=sandbox_environment(self.workdir, isolation=self.isolation),
            cwd=self.workdir, preexec_fn=apply_limits(self.limits), close_fds=True,
        )
        self.starts += 1

    def kill(self) -> None:
        self.busy = False
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _send(self, message: dict) -> None:
        payload = protocol.dumps_trusted(message)
        try:
            self.proc.stdin.write(struct.pack("<Q", len(payload)) + payload)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise _Dead(f"the sandbox's process is gone ({err})") from err

    def _receive(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        while True:
            if len(self.buffer) >= 8:
                (n,) = struct.unpack("<Q", self.buffer[:8])
                if n > protocol.MAX_MESSAGE_BYTES:
                    self.kill()
                    raise protocol.ProtocolError(f"the sandbox sent a message of {n:,} bytes (at most {protocol.MAX_MESSAGE_BYTES:,})")
                if len(self.buffer) >= 8 + n:
                    payload, self.buffer = self.buffer[8 : 8 + n], self.buffer[8 + n :]
                    return protocol.loads_untrusted(payload)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Late()
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    code = self.proc.wait()
                    raise _Dead(f"exit code {code}" if code >= 0 else f"killed by signal {-code}")
                self.buffer += chunk

    # ---- start: the cells, each with its limit; a cell that hangs or crashes is skipped next time
    def launch(self) -> None:
        """Start a sandbox and hand it the cells, without waiting: :meth:`start` waits (the grader works meanwhile)."""
        self.kill()
        self._spawn()
        self.launched = True
        try:
            self._send({"op": "init", "cells": self.cells, "skip": sorted(self.skip), "references": self.references,
                        "watched_prefixes": self.watched_prefixes})
        except _Dead:
            pass  # start() reads the death and reports it

    def start(self) -> None:
        while True:
            if not self.launched:
                self.launch()
            self.launched = False
            running = None
            try:
                deadline = time.monotonic() + self.limits.cell_seconds + 60  # start-up: imports of torch and the package
                while True:
                    message = self._receive(deadline)
                    op = message.get("op")
                    if op == "cell_start":
                        running = message["key"]
                        if running not in self.context_keys:
                            self.student_started = True
                        deadline = time.monotonic() + self.limits.cell_seconds
                    elif op == "cell":
                        if message["key"] in self.context_keys and message.get("status") == "error" and not self.student_started:
                            self.kill()
                            raise GraderError(f"the lab's own cell {message['key']!r} failed in the sandbox: {message.get('error')}"
                                              f"\n{message.get('stdout', '')[-2000:]}")
                        self.cell_reports.setdefault(message["key"], message)
                        for event in message.get("events", []):
                            self._flag("blocked", f"cell {message['key']}: {event}")
                        running = None
                        deadline = time.monotonic() + 60
                    elif op == "ready":
                        self.defined = list(message.get("defined", []))
                        self._merge_flags(message.get("flags", {}))
                        return
            except _Late:
                if running is None or running in self.context_keys:
                    self.kill()
                    if not self.student_started:
                        raise GraderError(f"the sandbox did not start in time (importing torch and the package){self._log_tail()}") from None
                    raise SandboxTimeout("the sandbox stopped answering after the student's cells ran")
                self.cell_reports[running] = {"status": "timeout", "error": f"the cell ran for more than {self.limits.cell_seconds:g} s and was stopped"}
                self._flag("timeout", f"cell {running}: stopped after {self.limits.cell_seconds:g} s")
                self.skip.add(running)
            except _Dead as dead:
                if running is None or running in self.context_keys:
                    if not self.student_started:
                        raise GraderError(f"the sandbox failed to start ({dead}){self._log_tail()}") from None
                    raise SandboxCrashed(f"the sandbox's process ended after the student's cells ran ({dead})")
                self.cell_reports[running] = {"status": "crashed", "error": f"the process running this cell ended ({dead})"}
                self._flag("crash", f"cell {running}: the process ended ({dead})")
                self.skip.add(running)

    def _log_tail(self) -> str:
        log = self.workdir / "sandbox.log"
        text = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        return f"; its output ended with:\n{text}" if text else ""

    def _flag(self, kind: str, text: str) -> None:
        items = self.flags.setdefault(kind, [])
        if text not in items:
            items.append(text)

    def _merge_flags(self, flags: dict) -> None:
        for kind, items in flags.items():
            for item in items:
                self._flag(kind, str(item))

    def close(self) -> None:
        if self.alive:
            try:
                self._send({"op": "exit"})
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass
        self.kill()

    # ---- calls
    def request(self, message: dict, deadline: float, what: str) -> dict:
        if not self.alive:
            self.start()
        self.busy = True  # until the answer is in: a test stopped meanwhile leaves the sandbox mid-call
        try:
            self._send(message)
            reply = self._receive(deadline)
            self.busy = False
            return reply
        except _Late:
            self.kill()
            self._flag("timeout", f"{what}: stopped when the test's time ran out")
            raise SandboxTimeout(f"{what} did not return before the test's time limit ({self.limits.test_seconds:g} s) ran out: "
                                 "is there an endless loop?") from None
        except _Dead as dead:
            self.proc = None
            crash = f"{what}: the sandbox's process ended ({dead})"
            if "signal 9" in str(dead):
                crash += "; a process killed by signal 9 has usually run out of memory"
                self._flag("memory", crash)
            self._flag("crash", crash)
            raise SandboxCrashed(f"{what} ended the process that ran it ({dead}); no result came back") from None


# ------------------------------------------------------------------ proxies
class _Attach(torch.autograd.Function):
    """Puts the result of a remote call on the caller's autograd graph; its backward asks the sandbox."""

    @staticmethod
    def forward(ctx, link, *inputs):
        ctx.link = link
        outs = [o.detach().clone() for o in link["outputs"]]
        ctx.mark_non_differentiable(*[o for o, rg in zip(outs, link["rg"]) if not rg])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        link = ctx.link
        wanted = [None if g is None else g.detach() for g, rg in zip(grads, link["rg"]) if rg]
        grads_in = link["runner"].backward(link["id"], wanted, link["name"])
        return (None, *grads_in)


def _flat_tensors(value: Any, out: list) -> list:
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _flat_tensors(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _flat_tensors(v, out)
    return out


def _replace_tensors(value: Any, new: list) -> Any:
    if isinstance(value, torch.Tensor):
        return new.pop(0)
    if isinstance(value, tuple):
        return tuple(_replace_tensors(v, new) for v in value)
    if isinstance(value, list):
        return [_replace_tensors(v, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_tensors(v, new) for k, v in value.items()}
    return value


def _for_sandbox(value: Any) -> Any:
    """Arguments as the sandbox gets them: tensors detached (keeping requires_grad on leaves), the rest as is."""
    if isinstance(value, torch.Tensor):
        out = value.detach()
        return out.requires_grad_(True) if value.requires_grad and value.is_floating_point() else out
    if isinstance(value, tuple):
        return tuple(_for_sandbox(v) for v in value)
    if isinstance(value, list):
        return [_for_sandbox(v) for v in value]
    if isinstance(value, dict):
        return {k: _for_sandbox(v) for k, v in value.items()}
    if isinstance(value, nn.Module):
        import copy

        with torch.no_grad():
            clone = copy.deepcopy(value) if all(p.is_leaf for p in value.parameters()) else _leaf_copy(value)
        return clone
    if callable(value) and not isinstance(value, (torch.Generator, type)):
        raise TypeError("the grader cannot pass a function to the student's code; pass tensors, numbers and networks")
    return value


def _leaf_copy(module: nn.Module) -> nn.Module:
    import copy

    clone = copy.copy(module)
    clone.__dict__ = dict(module.__dict__)
    clone._parameters = {k: None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad or not p.is_leaf)
                         for k, p in module._parameters.items()}
    clone._modules = {k: None if m is None else _leaf_copy(m) for k, m in module._modules.items()}
    return clone


def _mark_graph(t: torch.Tensor) -> None:
    """Make t (a leaf that does not require grad) carry an autograd history, as the student's in-place update made
    the sandbox's copy of it do."""
    with torch.enable_grad():
        t.add_(torch.zeros((), dtype=t.dtype, device=t.device, requires_grad=True) * 0)


def _apply_tensor_state(current: torch.Tensor, record: dict) -> None:
    new = protocol.decode_tensor(record)
    if current.is_leaf and current.requires_grad:
        return  # the sandbox could not have changed it in place either (torch forbids it)
    with torch.no_grad():
        if new.shape == current.shape and not torch.equal(current.detach(), new.to(current.dtype)):
            current.copy_(new)
    if record["rg"] and not record["leaf"] and current.is_leaf and current.is_floating_point():
        _mark_graph(current)
    elif current.is_leaf and current.is_floating_point():
        current.requires_grad_(bool(record["rg"]))


def _apply_module_state(module: nn.Module, entries: list[dict]) -> None:
    for entry in entries:
        owner_name, _, attr = entry["name"].rpartition(".")
        try:
            owner = module.get_submodule(owner_name) if owner_name else module
        except AttributeError:
            continue
        record = entry["v"]
        current = owner._parameters.get(attr) if attr in owner._parameters else owner._buffers.get(attr)
        if entry["same"] and current is not None and current.shape == record["v"].shape:
            _apply_tensor_state(current, record)
            continue
        new = protocol.decode_tensor(record)
        if entry["param"] or attr in owner._parameters:
            owner._parameters[attr] = nn.Parameter(new, requires_grad=bool(record["rg"]) and new.is_floating_point())
        else:
            owner._buffers[attr] = new


class RemoteFunction:
    """Stands in the trusted namespace for a function that lives in the sandbox."""

    def __init__(self, runner: "Runner", name: str) -> None:
        self._runner, self.__name__, self.__qualname__ = runner, name, name

    def __call__(self, *args, **kwargs):
        return self._runner.call(self.__name__, args, kwargs)

    def torch_calls(self, *args, **kwargs) -> int:
        """Call the function and count, in the sandbox, the torch operations it makes (the labs' vectorization checks)."""
        return self._runner.call(self.__name__, args, kwargs, count_torch_calls=True)

    def __repr__(self) -> str:
        return f"<the student's function {self.__name__} (runs in the sandbox)>"


class Runner:
    """Runs the tests of one job in this process against its sandbox."""

    def __init__(self, job: dict, workdir: Path) -> None:
        self.job = job
        self.limits = Limits(**job.get("limits", {}))
        self.session = Session(job["cells"], references=job.get("references", []), workdir=workdir,
                               isolation=job.get("isolation", "bwrap"), limits=self.limits,
                               watched_prefixes=job.get("watched_prefixes", []))
        self.calls = 0
        self.deadline = float("inf")
        self.failure: GradingInterrupt | None = None  # set by a proxy: the current test fails whatever its code does

    def _fail(self, error: GradingInterrupt) -> GradingInterrupt:
        if self.failure is None:
            self.failure = error
        return error

    def _request(self, message: dict, what: str) -> dict:
        if not self.session.alive:
            paused = signal.setitimer(signal.ITIMER_REAL, 0)[0]  # a restart is not the student's time
            started = time.monotonic()
            try:
                self.session.start()
            finally:
                self.deadline += time.monotonic() - started
                if paused:
                    signal.setitimer(signal.ITIMER_REAL, paused)
        try:
            return self.session.request(message, self.deadline, what)
        except GradingInterrupt as err:
            raise self._fail(err) from None

    def call(self, name: str, args: tuple, kwargs: dict, *, count_torch_calls: bool = False) -> Any:
        self.calls += 1
        call_id = self.calls
        what = f"{name}(...)"
        # torch's global random state travels with the call and back, as if the function ran in this process.
        message = {"op": "call", "id": call_id, "name": name, "args": [_for_sandbox(a) for a in args],
                   "kwargs": {k: _for_sandbox(v) for k, v in kwargs.items()}, "rng_state": torch.get_rng_state(),
                   "count_torch_calls": count_torch_calls}
        reply = self._request(message, what)
        state = reply.get("rng_state")
        if isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.shape == torch.get_rng_state().shape:
            torch.set_rng_state(state)
        self.session._merge_flags(reply.get("flags", {}))
        for event in reply.get("events", []):
            self.session._flag("blocked", f"{name}: {event}")
        # What the call did to its arguments happens in the caller's objects too.
        for kind, key, after in reply.get("after", []):
            original = args[key] if kind == "arg" else kwargs[key]
            if after is None:
                continue
            if after["kind"] == "tensor" and isinstance(original, torch.Tensor):
                _apply_tensor_state(original, after["v"])
            elif after["kind"] == "generator" and isinstance(original, torch.Generator) and original.device.type == "cpu":
                original.set_state(after["state"])
            elif after["kind"] == "module" and isinstance(original, nn.Module):
                _apply_module_state(original, after["entries"])
        if reply.get("hits"):
            reference = reply["hits"][0]
            self.session._flag("borrowed", f"{name} calls {reference}")
            raise self._fail(BorrowedReferenceUsed(
                f"{name} calls the package's own {reference}: the exercise is to write it yourself, so this test scores 0"))
        status = reply.get("status")
        if status == "raised":
            kind, text = reply.get("type", "Exception"), reply.get("message", "")
            if kind == "MemoryError" or any(sign in text for sign in MEMORY_SIGNS):
                self.session._flag("memory", f"{name}: {kind}: {text[:200]}")
            if kind in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
                raise self._fail(SandboxCrashed(f"{name} raised {kind}({text}); a graded function must return"))
            if kind == "BorrowedReference":
                raise self._fail(BorrowedReferenceUsed(text))
            raise PASSED_THROUGH.get(kind, RuntimeError)(text if kind in PASSED_THROUGH else f"{kind}: {text}")
        if status == "unsupported":
            raise self._fail(UnsupportedResult(reply.get("message", f"{name} returned a value the grader cannot read")))
        if count_torch_calls:
            count = reply.get("torch_calls")
            return int(count) if isinstance(count, int) else 0
        result = protocol.decode(reply["result"])
        outputs = _flat_tensors(result, [])
        diff_inputs = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor) and a.requires_grad and a.is_floating_point()]
        if diff_inputs and outputs and torch.is_grad_enabled() and any(o.requires_grad for o in outputs):
            link = {"outputs": outputs, "rg": [o.requires_grad for o in outputs], "runner": self, "id": call_id, "name": name}
            attached = _Attach.apply(link, *diff_inputs)
            attached = list(attached) if isinstance(attached, (tuple, list)) else [attached]
            result = _replace_tensors(result, attached)
        return result

    def backward(self, call_id: int, grads: list, name: str) -> list:
        reply = self._request({"op": "backward", "id": call_id, "grads": grads}, f"the gradient of {name}")
        if reply.get("hits"):
            raise self._fail(BorrowedReferenceUsed(f"{name} calls the package's own {reply['hits'][0]}"))
        if reply.get("status") != "ok":
            raise RuntimeError(f"the gradient of {name} failed in the sandbox: {reply.get('type')}: {reply.get('message')}")
        return [None if g is None else protocol.decode_tensor(g) for g in reply["grads"]]

    # ---- the tests
    def run(self) -> dict:
        started = time.perf_counter()
        cells = self.job["cells"]
        ns: dict[str, Any] = {"__name__": "__main__"}
        verdict: dict[str, Any] = {"lab": self.job.get("lab"), "student": self.job.get("student"), "cells": {},
                                   "isolation": self.session.isolation, "limits": self.limits.__dict__}
        os.environ["NBGRADER_EXECUTION"] = "autograde"
        self.session.launch()
        # While the sandbox imports torch and runs the student's cells, run the lab's leading context cells here.
        done = set()
        for cell in cells:
            if cell["kind"] != "context":
                break
            self.run_context(cell, ns)
            done.add(cell["key"])
        try:
            self.session.start()
        except GradingInterrupt as err:
            self.session._flag("crash", str(err))
        for name in self.job["expected"]:
            ns[name] = RemoteFunction(self, name)

        def on_alarm(signum, frame):
            raise self._fail(TestTimeout(f"the test ran for more than {self.limits.test_seconds:g} s and was stopped"))

        previous = signal.signal(signal.SIGALRM, on_alarm)
        try:
            for cell in cells:  # in the notebook's order, as nbgrader would run them
                key = cell["key"]
                if cell["kind"] == "context":
                    if key not in done:
                        self.run_context(cell, ns)
                elif cell["kind"] in ("solution", "extra"):
                    report = self.session.cell_reports.get(key, {"status": "not run"})
                    verdict["cells"][key] = {"kind": cell["kind"], **{k: report.get(k) for k in ("status", "stdout", "stderr", "error", "seconds")}}
                elif cell["kind"] == "test":
                    verdict["cells"][key] = self.run_test(cell, ns)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            self.session.close()
        verdict["flags"] = self.session.flags
        verdict["sandbox_starts"] = self.session.starts
        verdict["seconds"] = time.perf_counter() - started
        verdict["score"] = sum(c.get("score", 0) for c in verdict["cells"].values() if c["kind"] == "test")
        verdict["max_score"] = sum(c.get("points", 0) or 0 for c in verdict["cells"].values() if c["kind"] == "test")
        return verdict

    def run_context(self, cell: dict, ns: dict) -> None:
        out = io.StringIO()
        try:
            with redirect_stdout(out), redirect_stderr(out):
                exec(compile(cell["source"], f"<context {cell['key']}>", "exec"), ns)  # noqa: S102 - the instructor's code
        except Exception as err:  # noqa: BLE001 - the lab's own code failing is the grader's problem, never the student's
            raise GraderError(f"the lab's own cell {cell['key']!r} failed in the grader: {type(err).__name__}: {err}") from None
        for name in self.job["expected"]:  # a context cell must not shadow the student's functions
            ns[name] = RemoteFunction(self, name)

    def run_test(self, cell: dict, ns: dict) -> dict:
        self.failure = None
        out = io.StringIO()
        start = time.monotonic()
        self.deadline = start + self.limits.test_seconds
        status, message = "passed", None
        # The calls' own deadline (a clear message) comes first; the alarm also stops the test's own code.
        signal.setitimer(signal.ITIMER_REAL, self.limits.test_seconds + 2)
        try:
            with redirect_stdout(out), redirect_stderr(out):
                exec(compile(cell["source"], f"<test {cell['key']}>", "exec"), ns)  # noqa: S102 - the instructor's test
        except GraderError:
            raise  # the grader's failure, not the student's: no verdict at all
        except AssertionError as err:
            status, message = "failed", str(err) or "AssertionError"
        except GradingInterrupt as err:
            status, message = err.status, str(err)
        except BaseException as err:  # noqa: BLE001 - any other error fails the test, with its name
            status, message = "error", f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if self.session.busy:  # stopped in the middle of a call: that sandbox is still running it
                self.session.kill()
                self.session.busy = False
        if self.failure is not None and status == "passed":
            status, message = self.failure.status, str(self.failure)
        points = float(cell.get("points") or 0)
        return {"kind": "test", "status": status, "message": message, "stdout": out.getvalue()[-10000:],
                "seconds": time.monotonic() - start, "points": points, "score": points if status == "passed" else 0.0}


def grade_job(job: dict) -> dict:
    """Grade one job in this process (its sandbox in a child process); return the verdict."""
    with tempfile.TemporaryDirectory(prefix="sslcourse-sandbox-") as scratch:
        workdir = Path(scratch)
        os.chmod(workdir, 0o777)  # the sandbox's user (nobody) writes its scratch files here
        return Runner(job, workdir).run()


def serve() -> int:
    """``python -m sslcourse.grading.trusted --serve``: grade the jobs named on standard input, one forked child each.

    Importing torch and the package takes seconds; this process does it once and never runs a job itself. Each job
    runs in a child forked from it, so every job starts from the same state, as a fresh process would, and one job
    can leave nothing behind for the next. A line in: ``{"job": PATH, "verdict": PATH, "log": PATH}``; a line out:
    ``{"code": EXIT_CODE}``.
    """
    torch.set_num_threads(1)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: its output to the job's log, never to the protocol
            code = 1
            try:
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                code = main([request["job"], request["verdict"]])
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        sys.stdout.write(json.dumps({"code": code}) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return serve()
    if len(argv) != 2:
        print("usage: python -m sslcourse.grading.trusted JOB.json VERDICT.json  (or --serve)", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    torch.set_num_threads(1)
    try:
        verdict = grade_job(job)
    except GraderError as err:
        print(f"grading {job.get('student')}/{job.get('lab')} failed, not because of the submission: {err}", file=sys.stderr)
        return 3
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(verdict, indent=1))
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
