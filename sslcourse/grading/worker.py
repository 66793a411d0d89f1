"""The sandbox side of grading: runs one submission's code and answers calls of its functions.

Started by :class:`sslcourse.grading.trusted.Session` as ``python -m sslcourse.grading.worker``
inside the sandbox. It reads messages on its standard input and answers on its
standard output (both moved to private descriptors at start; whatever the
student's code prints goes to a log). It never sees a test: it runs the lab's
context cells (imports, constants) and the student's cells, then calls the
student's functions on the arguments the grader sends and returns what they
return, what they changed in their arguments, and what it noticed:

- calls of the package's own version of a graded function (tripwires);
- names of the lab rebound, torch / numpy / builtins / IPython patched;
- attempts to open the instructor's files or to reach the network (audit hooks).

Nothing here decides a grade; the grader does, in another process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from . import protocol

#: Modules whose attributes a submission must not rebind (checked after each cell and call).
WATCHED_MODULES = ("builtins", "math", "torch", "torch.nn.functional", "torch.testing", "numpy", "numpy.testing", "torch.autograd")
#: Audit events that say a submission reached for something outside its sandbox.
WATCHED_EVENTS = ("socket.connect", "socket.bind", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.kill", "os.fork", "pty.spawn")
KEEP_GRAPHS = 32


class _CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor operations a call makes (each once, not what it calls inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


class BorrowedReference(RuntimeError):
    """Raised when a graded function calls the package's own version of a function the student must write."""


class _State:
    armed = False  # tripwires fire only while a graded call runs
    hits: list[str] = []
    events: list[str] = []
    watching = False
    watched_prefixes: tuple[str, ...] = ()
    python_prefixes: tuple[str, ...] = tuple({os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})


STATE = _State()


# ------------------------------------------------------------------ tripwires
def _resolve(path: str):
    """'sslcourse.nets.ConvEncoder.__init__' -> (owner object, attribute name, current value)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ImportError(f"no module in {path!r}")


def install_tripwires(paths: list[str]) -> None:
    """Wrap each reference so that, during a graded call, calling it records a hit and raises BorrowedReference.

    Every module of the package that holds the same function object gets the wrapper too, so an alias
    (``from sslcourse.augment import masking_noise as mn``) is caught as well.
    """
    for path in paths:
        owner, name, original = _resolve(path)

        def tripwire(*args, __path=path, __original=original, **kwargs):
            if STATE.armed:
                STATE.hits.append(__path)
                raise BorrowedReference(
                    f"this calls the package's own {__path}; the exercise is to write it yourself (the package's version is off limits here)"
                )
            return __original(*args, **kwargs)

        functools.update_wrapper(tripwire, original)
        setattr(owner, name, tripwire)
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("sslcourse"):
                for attr, value in list(vars(module).items()):
                    if value is original:
                        setattr(module, attr, tripwire)


# ------------------------------------------------------------------ noticing
def _audit(event: str, args: tuple) -> None:
    if not STATE.watching:
        return
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if path.startswith(STATE.python_prefixes):
            return  # Python and its packages (a virtual environment may live inside the course): imports, not snooping
        if any(path.startswith(prefix) for prefix in STATE.watched_prefixes):
            STATE.events.append(f"open {path!r}")
    elif event == "sqlite3.connect" and args and any(os.fsdecode(args[0]).startswith(p) for p in STATE.watched_prefixes):
        STATE.events.append(f"sqlite3.connect {os.fsdecode(args[0])!r}")
    elif event in WATCHED_EVENTS:
        detail = repr(args[1]) if event.startswith("socket") and len(args) > 1 else repr(args[0])[:120] if args else ""
        STATE.events.append(f"{event} {detail}")


def _snapshot_modules() -> dict[tuple[str, str], int]:
    seen = {}
    for name in WATCHED_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        for attr, value in list(vars(module).items()):
            seen[(name, attr)] = id(value)
    for attr, value in list(vars(torch.Tensor).items()):
        seen[("torch.Tensor", attr)] = id(value)
    return seen


def _patched(before: dict[tuple[str, str], int]) -> list[str]:
    now = _snapshot_modules()
    changed = [f"{m}.{a}" for (m, a), i in now.items() if (m, a) in before and before[(m, a)] != i]
    added = [f"{m}.{a}" for (m, a) in now if (m, a) not in before and not a.startswith("_")]
    return sorted(changed + added)


def _hooks(shell) -> dict[str, int]:
    return {
        "IPython input transformers": len(shell.input_transformers_cleanup) + len(shell.input_transformers_post),
        "IPython AST transformers": len(shell.ast_transformers),
        "IPython event callbacks": sum(len(v) for v in shell.events.callbacks.values()),
        "sys.meta_path": len(sys.meta_path),
        "sys.settrace": 0 if sys.gettrace() is None else 1,
        "sys.setprofile": 0 if sys.getprofile() is None else 1,
    }


# ------------------------------------------------------------------ the worker
class Worker:
    def __init__(self, inbox, outbox) -> None:
        self.inbox, self.outbox = inbox, outbox
        self.graphs: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.flags: dict[str, list[str]] = {"tampering": []}

    def send(self, message: dict) -> None:
        protocol.send_bytes(self.outbox, protocol.dumps_untrusted(message))

    def receive(self) -> dict:
        return protocol.loads_trusted(protocol.read_message_bytes(self.inbox))

    # ---- cells
    def run_cell(self, source: str) -> dict:
        from IPython.utils.capture import capture_output

        out, err = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        with capture_output(display=False) as captured, redirect_stdout(out), redirect_stderr(err):
            result = self.shell.run_cell(source, store_history=False, silent=False)
        error = result.error_in_exec or result.error_before_exec
        text = None
        if error is not None:
            text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return {
            "status": "ok" if error is None else "error",
            "stdout": (captured.stdout + out.getvalue())[-20000:],
            "stderr": (captured.stderr + err.getvalue())[-20000:],
            "error": text,
            "seconds": time.perf_counter() - start,
        }

    def note_tampering(self, where: str) -> None:
        patched = _patched(self.modules_before)
        rebound = sorted(n for n, i in self.context_names.items() if id(self.shell.user_ns.get(n, None)) != i)
        hooks = {k: v for k, v in _hooks(self.shell).items() if v != self.hooks_before[k]}
        for item in [f"patched {p}" for p in patched] + [f"rebound the lab's name {n!r}" for n in rebound] + [f"changed {h}" for h in hooks]:
            entry = f"{item} ({where})"
            if not any(e.startswith(item + " (") for e in self.flags["tampering"]):
                self.flags["tampering"].append(entry)

    def init(self, message: dict) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        torch.set_num_threads(1)
        self.shell = InteractiveShell.instance()
        STATE.watched_prefixes = tuple(message.get("watched_prefixes", ()))
        skip = set(message.get("skip", ()))
        references_installed = False
        self.context_names: dict[str, int] = {}
        self.modules_before: dict = {}
        self.hooks_before = _hooks(self.shell)
        for cell in message["cells"]:
            key = cell["key"]
            if cell["kind"] != "context" and not references_installed:
                # The lab's own cells ran: remember what they defined, arm the noticing, then let the student in.
                install_tripwires(message.get("references", []))
                references_installed = True
                self.context_names = {n: id(v) for n, v in self.shell.user_ns.items() if not n.startswith("_")}
                self.modules_before = _snapshot_modules()
                self.hooks_before = _hooks(self.shell)
            if key in skip:
                self.send({"op": "cell", "key": key, "status": "skipped"})
                continue
            self.send({"op": "cell_start", "key": key})
            STATE.watching = cell["kind"] != "context"
            report = self.run_cell(cell["source"])
            STATE.watching = False
            report.update(op="cell", key=key, events=list(STATE.events))
            STATE.events.clear()
            self.send(report)
            if cell["kind"] != "context":
                self.note_tampering(f"in cell {key}")
        if not references_installed:
            install_tripwires(message.get("references", []))
        defined = sorted(n for n, v in self.shell.user_ns.items() if callable(v) and not n.startswith("_"))
        self.send({"op": "ready", "defined": defined, "flags": self.flags})

    # ---- calls
    def _after(self, value: Any, before_ids: dict | None) -> Any:
        """What a call left in one of its arguments: a tensor's values, a module's parameters, a generator's state."""
        if isinstance(value, torch.Tensor):
            return {"kind": "tensor", "v": protocol._tensor_record(value)}
        if isinstance(value, torch.Generator):
            return {"kind": "generator", "state": value.get_state()}
        if isinstance(value, nn.Module):
            entries = []
            for name, t in list(value.named_parameters(remove_duplicate=False)) + list(value.named_buffers(remove_duplicate=False)):
                entries.append({"name": name, "same": (before_ids or {}).get(name) == id(t), "param": isinstance(t, nn.Parameter),
                                "v": protocol._tensor_record(t)})
            return {"kind": "module", "entries": entries}
        return None

    @staticmethod
    def _module_ids(value: Any) -> dict | None:
        if isinstance(value, nn.Module):
            return {n: id(t) for n, t in list(value.named_parameters(remove_duplicate=False)) + list(value.named_buffers(remove_duplicate=False))}
        return None

    @staticmethod
    def _flat_tensors(value: Any, out: list) -> list:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif type(value) in (tuple, list):
            for v in value:
                Worker._flat_tensors(v, out)
        elif type(value) is dict:
            for v in value.values():
                Worker._flat_tensors(v, out)
        return out

    def call(self, message: dict) -> None:
        name, call_id = message["name"], message["id"]
        args, kwargs = list(message["args"]), dict(message["kwargs"])
        positions = [("arg", i, v) for i, v in enumerate(args)] + [("kwarg", k, v) for k, v in kwargs.items()]
        diff_inputs = [v for _, _, v in positions if isinstance(v, torch.Tensor) and v.requires_grad]
        before = {(kind, key): self._module_ids(v) for kind, key, v in positions}
        fn = self.shell.user_ns.get(name)
        out, err = io.StringIO(), io.StringIO()
        STATE.hits, STATE.events = [], []
        reply: dict[str, Any] = {"op": "result", "id": call_id}
        start = time.perf_counter()
        if message.get("rng_state") is not None:  # torch's global random state, as the grader's process has it
            torch.set_rng_state(message["rng_state"])
        counter = _CountTorchCalls() if message.get("count_torch_calls") else contextlib.nullcontext()
        try:
            if not callable(fn):
                raise NameError(f"name {name!r} is not defined: the cell that defines it did not run or does not define it")
            STATE.armed = STATE.watching = True
            with redirect_stdout(out), redirect_stderr(err), counter:
                result = fn(*args, **kwargs)
            STATE.armed = STATE.watching = False
            if message.get("count_torch_calls"):
                reply["torch_calls"] = counter.calls
            reply["status"] = "ok"
            try:
                reply["result"] = protocol.encode(result)
            except protocol.UnsupportedValue as unsupported:
                reply.update(status="unsupported", message=f"{name} returned {unsupported}")
            outputs = self._flat_tensors(result, [])
            if diff_inputs and any(o.requires_grad for o in outputs):
                self.graphs[call_id] = (diff_inputs, outputs)
                for old in sorted(self.graphs)[:-KEEP_GRAPHS]:
                    del self.graphs[old]
        except BaseException as error:  # noqa: BLE001 - the student's exception is the answer, whatever its kind
            STATE.armed = STATE.watching = False
            reply.update(status="raised", type=type(error).__name__, message=str(error)[:4000],
                         traceback="".join(traceback.format_exception(type(error), error, error.__traceback__))[-6000:])
        reply["seconds"] = time.perf_counter() - start
        reply["rng_state"] = torch.get_rng_state()
        reply["after"] = [[kind, key, self._after(v, before[(kind, key)])] for kind, key, v in positions]
        reply.update(hits=list(STATE.hits), events=list(STATE.events), stdout=out.getvalue()[-4000:], stderr=err.getvalue()[-4000:])
        self.note_tampering(f"during a call of {name}")
        reply["flags"] = self.flags
        self.send(reply)

    def backward(self, message: dict) -> None:
        call_id = message["id"]
        if call_id not in self.graphs:
            self.send({"op": "grads", "status": "raised", "type": "RuntimeError",
                       "message": "the graph of this call is gone (only the last 32 calls keep theirs)"})
            return
        inputs, outputs = self.graphs[call_id]
        pairs = [(o, g) for o, g in zip([o for o in outputs if o.requires_grad], message["grads"]) if g is not None]
        try:
            STATE.armed = True
            grads = torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True, retain_graph=True)
            STATE.armed = False
            self.send({"op": "grads", "status": "ok", "grads": [None if g is None else protocol._tensor_record(g) for g in grads],
                       "hits": list(STATE.hits)})
        except BaseException as error:  # noqa: BLE001
            STATE.armed = False
            self.send({"op": "grads", "status": "raised", "type": type(error).__name__, "message": str(error)[:4000]})

    def serve(self) -> None:
        self.init(self.receive())
        while True:
            message = self.receive()
            op = message.get("op")
            if op == "call":
                self.call(message)
            elif op == "backward":
                self.backward(message)
            elif op == "exit":
                return


def main() -> None:
    # The protocol gets private copies of stdin and stdout; the student's prints (even from C) go to a log.
    inbox = os.fdopen(os.dup(0), "rb", buffering=0)
    outbox = os.fdopen(os.dup(1), "wb")
    log = os.open(os.environ.get("SSLCOURSE_SANDBOX_LOG", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb"), write_through=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb"), write_through=True)
    sys.addaudithook(_audit)
    Worker(inbox, outbox).serve()


if __name__ == "__main__":
    main()
