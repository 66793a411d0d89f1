"""Where a submission's code runs: a bubblewrap sandbox with resource limits.

The sandbox sees a read-only copy of the system, of Python and of this package,
an empty writable ``/tmp``, and one scratch folder of its own as its working
directory. It does not see the course: ``solutions/``, the gradebook, other
submissions and the instructor's home are simply not there. It has no network
(a network namespace of its own, with nothing in it), its own process tree
(killed with the grader), and limits on memory (address space), CPU time,
file size and open files.

`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``; Debian and
Ubuntu: ``apt install bubblewrap``) is the tool: the one Flatpak uses, small,
and it needs no daemon. Without it, :func:`sandbox_command` refuses, unless
``isolation="none"`` is asked for explicitly: then the submission still runs in
a process of its own with the same limits, and the verdict is still computed
outside it, but its code can read and write whatever the grader's user can
and reach the network. Use that only for code you trust (your own tests).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ISOLATIONS = ("bwrap", "none")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is needed and missing (or cannot create namespaces here)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission's sandbox.

    memory_bytes: address space of the sandbox's process (torch needs about 1.5 GB of it to start).
    cpu_seconds: CPU time of the whole session (a backstop; wall-clock timeouts are the grader's).
    cell_seconds: wall-clock limit of one cell of the student's (defining the functions).
    test_seconds: wall-clock limit of one graded test, all its calls of the student's functions included.
    """

    memory_bytes: int = 6 * 2**30
    cpu_seconds: int = 900
    file_bytes: int = 256 * 2**20
    open_files: int = 256
    cell_seconds: float = 30.0
    test_seconds: float = 60.0


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def check_isolation(isolation: str) -> None:
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    if isolation == "bwrap" and bwrap_path() is None:
        raise SandboxUnavailable(
            "grading runs each submission in a bubblewrap sandbox, and `bwrap` is not on this machine's PATH. "
            "Install it (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap), "
            "or grade without isolation with --isolation none (students' code could then read your files and "
            "reach the network; only for submissions you trust)."
        )


#: Where the sandbox sees this package: its folder alone, mounted apart from the course that holds it.
PACKAGE_MOUNT = "/opt/sslcourse-package"


def package_dir() -> Path:
    """The folder of the sslcourse package that this process imported (an editable install's is inside the course)."""
    return Path(__file__).resolve().parents[1]


def _read_only_roots() -> list[str]:
    """What the sandbox must see to run Python and torch: nothing of the course itself."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    # site-packages outside the prefixes (user site, PYTHONPATH entries that hold torch, ...)
    for entry in sys.path:
        if entry and os.path.isdir(entry) and ("site-packages" in entry or "dist-packages" in entry):
            roots.add(entry)
    executable = Path(sys.executable).resolve()
    roots.add(str(executable.parent))
    return sorted(r for r in roots if r and os.path.exists(r))


def sandbox_command(workdir: Path, *, isolation: str = "bwrap") -> list[str]:
    """The command that starts :mod:`sslcourse.grading.worker` in a sandbox whose working directory is ``workdir``."""
    check_isolation(isolation)
    python = [sys.executable, "-m", "sslcourse.grading.worker"]
    if isolation == "none":
        return python
    cmd = [
        bwrap_path(), "--unshare-all", "--die-with-parent", "--new-session",
        "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            cmd += ["--ro-bind", str(target), str(target)]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime", "/etc/fonts"):
        if os.path.exists(path):
            cmd += ["--ro-bind", path, path]
    course_roots = [str(package_dir().parent)]
    for root in _read_only_roots():
        # never the course's folder or one above it (a virtual environment inside the course is fine: it is just Python)
        if not root.startswith("/usr/") and not any(c == root or c.startswith(root.rstrip("/") + "/") for c in course_roots):
            cmd += ["--ro-bind", root, root]
    # The package alone, where PYTHONPATH finds it first (before an editable install's finder, which points into the course).
    cmd += ["--ro-bind", str(package_dir()), f"{PACKAGE_MOUNT}/sslcourse"]
    cmd += ["--bind", str(workdir), "/submission", "--chdir", "/submission"]
    return cmd + python


def sandbox_environment(workdir: Path, *, isolation: str = "bwrap") -> dict[str, str]:
    """A minimal environment: no instructor variables, one thread, nbgrader's autograde mode."""
    home = "/tmp" if isolation == "bwrap" else str(workdir)
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "NBGRADER_EXECUTION": "autograde",
        "CUDA_VISIBLE_DEVICES": "",
        "LANG": "C.UTF-8",
        "SSLCOURSE_SANDBOX_LOG": os.path.join("/submission" if isolation == "bwrap" else str(workdir), "sandbox.log"),
    }
    env["PYTHONPATH"] = PACKAGE_MOUNT if isolation == "bwrap" else str(package_dir().parent)
    if "VIRTUAL_ENV" in os.environ:
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    return env


def apply_limits(limits: Limits):
    """A preexec function for subprocess.Popen: the sandbox's rlimits (inherited by bwrap's child)."""

    def preexec() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return preexec
