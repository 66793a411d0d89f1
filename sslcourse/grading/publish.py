"""The public student edition of the course, and the check that it leaks no answers.

The instructor repository holds everything: the book, the package, ``solutions/`` (reference
solutions, hidden tests and model answers), the tests and the grading configuration. Students
get a separate, public repository, the *student edition*: what the Colab buttons open and what
``pip install git+REPOSITORY_URL`` installs. :func:`publish` writes it; :func:`leak_check`
proves that it holds no line of a solution, a hidden test or a model answer.

What travels (an allowlist, so a new folder of the instructor repository stays behind until
someone decides otherwise): the book (``book/``, ``_config.yml``, ``_toc.yml``), the released
labs (``labs/``), the package (``sslcourse/``, its grading code included: it holds no answers),
``pyproject.toml``, ``requirements.txt``, ``constraints.txt``, ``.gitignore``, a licence if there
is one, and a README for students written here. In a git repository only the files git would
commit travel (tracked, or untracked and not ignored), so ignored files (``_grading/``,
``_build/``, ``.venv/``, caches) never do.

Nothing is rewritten on the way: the lab notebooks' locked cells carry checksums that grading
relies on. So the URL of the public repository is set once, in the instructor repository
(``sslcourse.notebook.REPOSITORY_URL`` and ``_config.yml``'s ``repository.url``), and
:func:`publish` refuses to write an edition whose Colab buttons, badges or setup cells point
anywhere else.
"""

from __future__ import annotations

import bisect
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tokenize
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "Leak",
    "LeakError",
    "PublishError",
    "PublishReport",
    "NOT_SECRET",
    "SecretLine",
    "canonical",
    "format_leaks",
    "leak_check",
    "publish",
    "secret_lines",
]

# ---------------------------------------------------------------- what travels
#: Top-level folders of the course that go into the student edition, whole.
EDITION_DIRS = ("book", "labs", "sslcourse")
#: Top-level files of the course that go into the student edition.
EDITION_FILES = ("_config.yml", "_toc.yml", "references.bib", "pyproject.toml", "requirements.txt", "constraints.txt", ".gitignore")
#: Files the edition cannot do without (the README is written by publish).
REQUIRED = ("_config.yml", "_toc.yml", "pyproject.toml", "requirements.txt", "constraints.txt", "sslcourse/__init__.py", "sslcourse/notebook.py")
#: Top-level licence files travel under whatever name they have.
LICENCE = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE)([.-].*)?$", re.IGNORECASE)
#: Never copied, wherever they are (the fallback walk also skips git's ignored folders with these).
SKIPPED_PARTS = {".git", ".venv", "venv", "_build", "_grading", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".jupyter_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pt", ".egg-info")

COLAB = "https://colab.research.google.com"
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)\"']+)/([^/\s)\"']+)/blob/([^/\s)\"']+)/([^\s)\"'#?]+)")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


class PublishError(ValueError):
    """The course cannot be published as asked (a check failed, or the output folder is unsuitable)."""


@dataclass(frozen=True)
class PublishReport:
    """What :func:`publish` wrote."""

    edition: Path  #: the folder of the student edition
    repository_url: str  #: the public repository its Colab buttons and setup cells point at
    files: tuple[str, ...]  #: every file written, relative POSIX paths, README.md included
    left_out: tuple[str, ...]  #: the course's files that stayed in the instructor repository
    notebooks: tuple[str, ...]  #: the notebooks checked to start with the setup cell
    secret_lines: int | None  #: how many secret lines the leak check looked for (None: not checked)


# ------------------------------------------------------------------- leak check
@dataclass(frozen=True)
class SecretLine:
    """One line that must not appear in the student edition, and where it comes from."""

    lab: str  #: e.g. "lab01_denoising_autoencoders"
    region: str  #: e.g. "solution of masking_noise", "hidden tests of test_masking_noise", "model answer of reflection"
    text: str  #: the line as written in the solution notebook, stripped


@dataclass(frozen=True)
class Leak:
    """A secret line found in a file of the edition (or of an extra path)."""

    file: str  #: relative to the edition (or the extra path as given, joined with the file's path under it)
    line: int  #: 1-based; in a notebook, the line within the cell (its source, then its outputs, then its metadata's strings)
    cell: int | None  #: in a notebook, the 0-based index of the cell (None: the notebook's metadata); None elsewhere
    lab: str  #: the lab the secret comes from
    region: str  #: the region of the solution notebook it comes from
    text: str  #: the secret line

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.cell is None else f"{self.file} (cell {self.cell}, line {self.line})"


class LeakError(PublishError):
    """The edition that :func:`publish` wrote contains secret lines; ``leaks`` lists them."""

    def __init__(self, message: str, leaks: list[Leak]):
        super().__init__(message)
        self.leaks = leaks


#: A line is looked for only if it has at least this many non-space characters ...
MIN_CHARS = 25
#: ... and at least this many letters and digits (so lines of brackets and punctuation never count).
MIN_WORD_CHARS = 12

#: Lines of the solution notebooks that are not secrets although they are long enough to look like
#: one. Each entry: the line as written in the solution notebook (without its trailing comment), and
#: why it may be public. Two kinds only, and never a line that computes part of an answer:
#:
#: - generic idioms and fragments that only name public functions, which say nothing about any
#:   exercise (the book and the package have them too);
#: - the public contract of a function the package exports and a lab asks for: input layout,
#:   argument checks and their error messages, the documented edge case. The lab's own docstring
#:   states each of them, and the package (public by design) raises or returns the same.
NOT_SECRET: dict[str, str] = {
    # generic idioms
    "g = torch.Generator().manual_seed(0)": "seeding a CPU generator; every chapter of the book does it",
    "return F.cross_entropy(logits, targets)": (
        "the last line of any classification-style loss; the docstrings of cpc_info_nce and info_nce_queue "
        "prescribe F.cross_entropy with the positive as target"
    ),
    '"random_grayscale, gaussian_blur)")': (
        "the end of a hidden-test hint that only names two public functions of sslcourse.augment (lab05's text names them "
        "too); its words also run across two lines of the package's __all__"
    ),
    # the public contract of sslcourse.patches.random_masking (lab07): 'a float in [0, 1); otherwise ValueError, also if L_keep < 1'
    'raise ValueError(f"random_masking: mask_ratio must be in [0, 1), got {mask_ratio}")': "the error message of sslcourse.patches.random_masking",
    'raise ValueError(f"random_masking: mask_ratio {mask_ratio} keeps no token of {length}")': "the error message of sslcourse.patches.random_masking",
    # the public contract of sslcourse.patches.patchify / unpatchify (lab07)
    "b, c, height, width = images.shape": "patchify's documented input layout (B, C, H, W)",
    "b, length, dim = patches.shape": "unpatchify's documented input layout (B, L, D)",
    'raise ValueError(f"unpatchify expects patches (B, L, D), got shape {tuple(patches.shape)}")': (
        "the error message of sslcourse.patches.unpatchify ('Raises ValueError if patches is not 3-dimensional')"
    ),
    "height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)": (
        "unpatchify's documented argument: 'image_size: H (an int, for square images) or a pair (H, W)'"
    ),
    # the public contract of sslcourse.masks.random_block_mask (lab02)
    "if num_blocks == 0 or h == 0 or w == 0:": (
        "random_block_mask's documented edge case: 'Nothing is hidden when num_blocks is 0 or a side h or w rounds to 0'"
    ),
    "return torch.zeros(b, 1, H, W, dtype=torch.bool, device=device)": (
        "random_block_mask's documented result for that edge case: 'bool tensor (B, 1, H, W) on device', all False"
    ),
}

_BEGIN_END = {
    "solution": ("BEGIN SOLUTION", "END SOLUTION"),
    "hidden tests": ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS"),
    "mark scheme": ("BEGIN MARK SCHEME", "END MARK SCHEME"),
}
_MARKDOWN_PREFIX = re.compile(r"^(?:[-*+>]|\d+[.)]|#+)\s+")
_LINT_COMMENT = re.compile(r"#\s*(noqa|type:|pragma|pylint:|fmt:|isort:)")
_NOT_WORD = re.compile(r"[\W_]+")
_TAG = re.compile(r"<[^>]*>")


def canonical(text: str) -> str:
    """The words of ``text``, case-folded, one space apart: what the leak check compares.

    Markup, punctuation and line breaks vary between a notebook, a .py file and the built HTML
    (syntax highlighting, ``**bold**``, smart quotes, ``\\(math\\)``); the words do not.
    """
    return _NOT_WORD.sub(" ", text.casefold()).strip()


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _read_notebook(path: Path) -> dict:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PublishError(f"expected a Jupyter notebook (JSON) at {path}; could not read it: {err}") from err
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise PublishError(f"expected a Jupyter notebook with a 'cells' list at {path}; got {type(nb).__name__} without one")
    return nb


def _regions(lines: list[str], begin: str, end: str) -> list[list[str]]:
    """The lines strictly between each ``begin`` marker line and the next ``end`` one (or the end of the cell)."""
    regions, current = [], None
    for line in lines:
        if begin in line:
            current = []
            regions.append(current)
        elif end in line:
            current = None
        elif current is not None:
            current.append(line)
    return regions


def _secrets_of_notebook(nb: dict) -> list[tuple[str, str, bool]]:
    """(region, line, is_markdown) for every line of the notebook that students must not see."""
    found = []
    for index, cell in enumerate(nb["cells"]):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        name = meta.get("grade_id") or f"cell {index}"
        lines = _source(cell).splitlines()
        markdown = cell.get("cell_type") == "markdown"
        for kind, (begin, end) in _BEGIN_END.items():
            for region in _regions(lines, begin, end):
                found += [(f"{kind} of {name}", line, markdown) for line in region]
        if meta.get("solution") and not any(_BEGIN_END["solution"][0] in line for line in lines):
            # nbgrader replaces the whole cell: for markdown that is the model answer, for code the solution
            kind = "model answer" if markdown else "solution"
            found += [(f"{kind} of {name}", line, markdown) for line in lines]
    return found


def _informative(text: str) -> bool:
    return len("".join(text.split())) >= MIN_CHARS and len(canonical(text).replace(" ", "")) >= MIN_WORD_CHARS


def _code_part(line: str) -> str:
    """A line of Python without its trailing comment (a whole-line comment stays as it is)."""
    text = line.strip()
    if "#" not in text or text.startswith("#"):
        return text
    lines = iter([text + "\n"])
    try:
        for token in tokenize.generate_tokens(lambda: next(lines, "")):
            if token.type == tokenize.COMMENT:
                return text[: token.start[1]].rstrip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a line of a longer statement: tokens up to the error were seen, and none was a comment
    return text


def _needles(line: str, markdown: bool) -> list[str]:
    """What to look for to find ``line``: the words of the line, and for a code line with a trailing
    comment also those of the code alone (a copy may drop the comment); for a markdown line, without
    its list marker, and also without its links' addresses (neither survives rendering to HTML).
    Uninformative forms are left out."""
    text = line.strip()
    if markdown:
        text = _MARKDOWN_PREFIX.sub("", text)
        forms = [text, re.sub(r"\]\([^)]*\)", "]", text)]
    else:
        code = _code_part(text)
        if code in NOT_SECRET:
            return []
        # a linter's directive (# noqa: ..., # type: ignore) is no information
        forms = [code] if _LINT_COMMENT.match(text[len(code) :].strip()) else [text, code]
    return list(dict.fromkeys(canonical(f) for f in forms if _informative(f)))


def _solution_notebooks(course_root: Path) -> list[Path]:
    notebooks = sorted(p for p in (course_root / "solutions").glob("*/*.ipynb") if p.parent.name + ".ipynb" == p.name)
    if not notebooks:
        raise PublishError(
            f"expected the instructor repository's solution notebooks at {course_root}/solutions/<lab>/<lab>.ipynb; found none "
            "(the leak check needs them to know what to look for)"
        )
    return notebooks


def _public_text(course_root: Path) -> str:
    """The canonical text of every released lab notebook: lines found there are public by design."""
    parts = []
    for path in sorted((course_root / "labs").glob("*/*.ipynb")):
        parts += [canonical(_source(cell)) for cell in _read_notebook(path)["cells"]]
    return " " + " ".join(p for p in parts if p) + " "


def _package_text(course_root: Path) -> str:
    """The canonical text of the package's own modules (its grading code aside)."""
    parts = []
    for path in sorted((course_root / "sslcourse").rglob("*.py")):
        if "grading" not in path.relative_to(course_root / "sslcourse").parts:
            parts.append(canonical(path.read_text(encoding="utf-8")))
    return " " + " ".join(parts) + " "


def _collect(course_root: Path) -> dict[str, list[SecretLine]]:
    """Canonical needle -> the secret lines it stands for (one per lab and region).

    Public by design, so not looked for: lines the released labs show, and lines of a *solution* that the
    package's own implementation of the same method has word for word. The package implements every method of
    the course and is published (that is what the labs' tripwires are for: a graded function may not call it);
    a one-line formula written the same way in both tells a student nothing the package does not. Hidden
    tests and model answers get no such exception, unless the same line is also a solution line found in the
    package (a test that recomputes the formula).
    """
    course_root = Path(course_root)
    public = _public_text(course_root)
    package = _package_text(course_root)
    notebooks = [(path.parent.name, _secrets_of_notebook(_read_notebook(path))) for path in _solution_notebooks(course_root)]
    in_package = {needle for _, secrets in notebooks for region, line, markdown in secrets if region.startswith("solution")
                  for needle in _needles(line, markdown) if f" {needle} " in package}
    needles: dict[str, list[SecretLine]] = {}
    for lab, secrets in notebooks:
        for region, line, markdown in secrets:
            secret = SecretLine(lab, region, line.strip())
            for needle in _needles(line, markdown):
                if f" {needle} " in public or needle in in_package:
                    continue
                entries = needles.setdefault(needle, [])
                if all((s.lab, s.region) != (secret.lab, secret.region) for s in entries):
                    entries.append(secret)
    return needles


def secret_lines(course_root: str | os.PathLike) -> list[SecretLine]:
    """Every line the leak check looks for: the informative lines of solution regions, hidden tests,
    mark schemes and model answers of ``course_root/solutions/*/*.ipynb`` that the released labs do
    not show and that ``NOT_SECRET`` does not list; one entry per line, lab and region."""
    found = {secret: None for entries in _collect(Path(course_root)).values() for secret in entries}
    return list(found)


# A unit of a scanned file: (cell or None, first line number, text).
def _units(path: Path) -> list[tuple[int | None, int, str]] | None:
    """The text of a file to scan, in units that keep line numbers; None for a binary file (one with a
    NUL byte near its start, or not UTF-8)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if b"\0" in raw[:8192]:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    suffix = path.suffix.lower()
    if suffix == ".ipynb":
        try:
            nb = json.loads(text)
            cells = nb["cells"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return [(None, 1, text)]  # not a notebook after all: scan its text
        units = []
        for index, cell in enumerate(cells):
            pieces = [_source(cell)]
            for output in cell.get("outputs", []) or []:
                pieces.append(_source({"source": output.get("text", "")}))
                for mime, value in (output.get("data") or {}).items():
                    if mime.startswith("text/"):
                        value = _source({"source": value})
                        pieces.append(_strip_html(value) if mime == "text/html" else value)
            pieces += _json_strings(cell.get("metadata") or {})
            units.append((index, 1, "\n".join(p for p in pieces if p)))
        units.append((None, 1, "\n".join(_json_strings(nb.get("metadata") or {}))))
        return units
    if suffix in (".html", ".htm", ".xml", ".svg"):
        return [(None, 1, _strip_html(text))]
    if suffix == ".json":
        try:
            strings = list(_json_strings(json.loads(text)))
        except json.JSONDecodeError:
            return [(None, 1, text)]
        # line numbers of a JSON file's strings are not the file's: report the first line of the file
        return [(None, 1, "\n".join(strings))]
    return [(None, 1, text)]


def _strip_html(text: str) -> str:
    """Text without tags (each tag becomes a space, line breaks kept) and with entities decoded."""
    return html.unescape(_TAG.sub(lambda m: " " + "\n" * m.group().count("\n"), text))


def _json_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def _scan_file(path: Path, shown: str, needles: dict[str, list[SecretLine]], needle_words: dict[str, frozenset]) -> list[Leak]:
    units = _units(path)
    if not units:
        return []
    # one canonical string per file, with where each of its lines starts
    starts, places, pieces, offset = [], [], [], 1
    for cell, first, text in units:
        for number, line in enumerate(text.splitlines(), start=first):
            words = canonical(line)
            if words:
                starts.append(offset)
                places.append((cell, number))
                pieces.append(words)
                offset += len(words) + 1
    if not pieces:
        return []
    haystack = " " + " ".join(pieces) + " "
    present = frozenset(haystack.split())
    leaks = []
    for needle, secrets in needles.items():
        if not needle_words[needle] <= present:
            continue
        at = haystack.find(f" {needle} ")
        while at != -1:
            cell, number = places[bisect.bisect_right(starts, at + 1) - 1]
            leaks += [Leak(shown, number, cell, s.lab, s.region, s.text) for s in secrets]
            at = haystack.find(f" {needle} ", at + 1)
    return leaks


def _files_to_scan(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".venv"))
        files += [Path(folder) / n for n in sorted(names)]
    return files


def leak_check(course_root: str | os.PathLike, edition: str | os.PathLike, *, extra_paths=()) -> list[Leak]:
    """Look for every secret line of the instructor repository in the student edition.

    The secret lines (see :func:`secret_lines`) come from ``course_root/solutions/*/*.ipynb``:
    the lines of solution regions (a whole solution cell where it has no markers), of hidden-test
    and mark-scheme regions, and of model answers (markdown solution cells). Short or generic
    lines (fewer than ``MIN_CHARS`` non-space characters, or fewer than ``MIN_WORD_CHARS`` letters
    and digits), lines that the released labs show anyway and the lines of ``NOT_SECRET`` (each with
    its reason) are not looked for.

    Every text file of ``edition`` and of each of ``extra_paths`` (a file or a folder, e.g. a built
    book's ``_build/html``) is scanned, ``.git`` and ``.venv`` aside, whatever its suffix:
    notebooks cell by cell (sources, text outputs and metadata), HTML (and XML, SVG) without its tags and with
    its entities decoded, JSON by its strings (reported at line 1), anything else line by line. Lines are compared by their words (:func:`canonical`), so a secret is found whatever
    the highlighting, markup or line wrapping around it. Returns the leaks sorted by file and line
    (one per secret source when a line stands for several); an empty list means none.
    """
    edition = Path(edition)
    if not edition.is_dir():
        raise PublishError(f"expected the student edition to be a folder; {edition} is not one")
    extras = [Path(extra) for extra in extra_paths]
    for extra in extras:
        if not extra.exists():
            raise PublishError(f"expected an extra path to scan for leaks (a file or folder); {extra} does not exist")
    return _scan(_collect(Path(course_root)), [(edition, None)] + [(extra, extra) for extra in extras])


def _scan(needles: dict[str, list[SecretLine]], roots: list[tuple[Path, Path | None]]) -> list[Leak]:
    """Scan every file under each root; a root shown as None is reported relative to itself."""
    needle_words = {needle: frozenset(needle.split()) for needle in needles}
    leaks = []
    for root, shown_root in roots:
        for path in _files_to_scan(root):
            if shown_root is None:
                shown = path.relative_to(root).as_posix()
            else:
                shown = shown_root.as_posix() if path == shown_root else (shown_root / path.relative_to(shown_root)).as_posix()
            leaks += _scan_file(path, shown, needles, needle_words)
    return sorted(set(leaks), key=lambda k: (k.file, -1 if k.cell is None else k.cell, k.line, k.lab, k.region, k.text))


def format_leaks(leaks: list[Leak]) -> str:
    """The leaks for people: one line each, grouped by file; or a sentence saying there are none."""
    if not leaks:
        return "leak check: no line of a solution, hidden test or model answer found"
    files = sorted({leak.file for leak in leaks})
    out = [f"leak check: {len(leaks)} leak(s) in {len(files)} file(s):"]
    for leak in leaks:
        text = leak.text if len(leak.text) <= 100 else leak.text[:97] + "..."
        out.append(f"  {leak.where}: {leak.lab}, {leak.region}: {text}")
    return "\n".join(out)


# ---------------------------------------------------------------------- publish
def _course_files(course_root: Path) -> list[str]:
    """Every file of the course that git would commit (tracked, or untracked and not ignored), as
    relative POSIX paths; outside a git repository, a walk that skips the usual ignored folders."""
    env = {**os.environ, "LC_ALL": "C"}  # git's messages in English, to recognise "not a git repository"
    try:
        probe = subprocess.run(["git", "-C", str(course_root), "rev-parse", "--show-toplevel"], capture_output=True, text=True, env=env)
    except FileNotFoundError:
        probe = None
    if probe is not None and probe.returncode == 0:
        listing = subprocess.run(
            ["git", "-C", str(course_root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            text=True,
            env=env,
        )
        if listing.returncode != 0:
            raise PublishError(f"git ls-files failed in {course_root} (exit {listing.returncode}): {listing.stderr.strip()}")
        names = sorted({n for n in listing.stdout.split("\0") if n})
        return [n for n in names if (course_root / n).is_file() and not _skipped(n)]
    if probe is not None and "not a git repository" not in probe.stderr:
        raise PublishError(f"expected {course_root} to be a git repository or a plain folder; git says: {probe.stderr.strip()}")
    names = []
    for folder, dirs, files in os.walk(course_root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_PARTS and not d.endswith(SKIPPED_SUFFIXES))
        rel = Path(folder).relative_to(course_root)
        names += [(rel / f).as_posix() for f in sorted(files) if not _skipped((rel / f).as_posix())]
    return names


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p in SKIPPED_PARTS or p.endswith(SKIPPED_SUFFIXES) for p in parts)


def _travels(name: str) -> bool:
    top = PurePosixPath(name).parts[0]
    if len(PurePosixPath(name).parts) == 1:
        return name in EDITION_FILES or bool(LICENCE.match(name))
    return top in EDITION_DIRS


def _load_yaml(path: Path) -> dict:
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - jupyter-book depends on PyYAML
        raise PublishError("publishing reads _config.yml and _toc.yml with PyYAML; install it (jupyter-book brings it)") from err
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise PublishError(f"expected readable YAML in {path}: {err}") from err
    if not isinstance(data, dict):
        raise PublishError(f"expected a mapping in {path}; got {type(data).__name__}")
    return data


def _course_notebook_module(course_root: Path):
    """The course's own ``sslcourse/notebook.py`` (the edition's truth, whatever sslcourse is installed)."""
    path = course_root / "sslcourse" / "notebook.py"
    spec = importlib.util.spec_from_file_location("_sslcourse_notebook_of_course", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("REPOSITORY_URL", "SETUP_CELL"):
        if not isinstance(getattr(module, name, None), str):
            raise PublishError(f"expected {path} to define the string {name}; it does not")
    return module


def _toc_files(toc: dict) -> list[str]:
    files = [toc["root"]] if "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def _check_book(course_root: Path, chosen: set[str]) -> tuple[str, str, str]:
    """The checks that keep the edition a book whose Colab buttons open the public repository.
    Returns the repository's URL, its branch and the setup cell."""
    module = _course_notebook_module(course_root)
    url = module.REPOSITORY_URL.rstrip("/")
    match = re.fullmatch(r"https://github\.com/([^/\s]+)/([^/\s]+?)(?:\.git)?", url)
    if not match:
        raise PublishError(f"expected sslcourse.notebook.REPOSITORY_URL to be a GitHub repository (https://github.com/OWNER/REPO), which Colab can open; got {module.REPOSITORY_URL!r}")
    config = _load_yaml(course_root / "_config.yml")
    repository = config.get("repository") or {}
    if str(repository.get("url", "")).rstrip("/") != url:
        raise PublishError(
            f"_config.yml's repository.url is {repository.get('url')!r}, expected {url!r} (sslcourse.notebook.REPOSITORY_URL): "
            "the Colab buttons and the notebooks' setup cells must point at the same public repository; set both in the instructor repository"
        )
    colab = str((config.get("launch_buttons") or {}).get("colab_url", "")).rstrip("/")
    if colab != COLAB:
        raise PublishError(f"_config.yml's launch_buttons.colab_url is {colab!r}, expected {COLAB!r}: without it the pages have no Colab button")
    branch = str(repository.get("branch") or "main")
    favicon = (config.get("html") or {}).get("favicon")
    for name in [config.get("logo"), favicon] + list(config.get("bibtex_bibfiles") or []):
        if not name:
            continue
        if name not in chosen:
            raise PublishError(f"_config.yml refers to {name!r}, a file the edition does not hold; add it to EDITION_FILES or EDITION_DIRS")
    toc = _load_yaml(course_root / "_toc.yml")
    missing = [f for f in _toc_files(toc) if not {f, f"{f}.ipynb", f"{f}.md"} & chosen]
    if missing:
        raise PublishError(f"_toc.yml lists pages that the student edition does not hold (the book would not build): {missing}")
    return url, branch, module.SETUP_CELL


def _check_notebooks(course_root: Path, notebooks: list[str], chosen: set[str], url: str, branch: str, setup_cell: str) -> None:
    """Every notebook starts with the setup cell; its Colab links and relative links stay inside the edition."""
    owner_repo = url.split("github.com/", 1)[1].removesuffix(".git")
    problems = []
    for name in notebooks:
        nb = _read_notebook(course_root / name)
        code = [c for c in nb["cells"] if c.get("cell_type") == "code"]
        if not code or _source(code[0]) != setup_cell:
            got = f"it begins {(_source(code[0]).splitlines() or [''])[0]!r}" if code else "it has no code cell"
            problems.append(f"{name}: the first code cell is not sslcourse.notebook.SETUP_CELL ({got})")
        for cell in nb["cells"]:
            if cell.get("cell_type") != "markdown":
                continue
            text = _source(cell)
            for owner, repo, at, path in COLAB_LINK.findall(text):
                if f"{owner}/{repo}" != owner_repo or at != branch or path not in chosen:
                    problems.append(f"{name}: Colab link to {owner}/{repo}/blob/{at}/{path}, expected {owner_repo}/blob/{branch}/<a notebook of the edition>")
            for target in MARKDOWN_LINK.findall(text):
                if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target, re.IGNORECASE):
                    continue
                resolved = os.path.normpath(PurePosixPath(name).parent / target.split("#", 1)[0]).replace(os.sep, "/")
                if resolved not in chosen and not any(c.startswith(resolved + "/") for c in chosen):
                    problems.append(f"{name}: link to {target}, which the student edition does not hold")
    if problems:
        raise PublishError("the notebooks are not ready for the student edition:\n  " + "\n  ".join(problems))


def _title(path: Path) -> str:
    for cell in _read_notebook(path)["cells"]:
        if cell.get("cell_type") == "markdown":
            for line in _source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def _readme(course_root: Path, url: str, branch: str, pages: list[str], requires_python: str) -> str:
    """The students' README: what the course is, Colab links to every page, a local install, handing in."""
    owner_repo = url.split("github.com/", 1)[1].removesuffix(".git")
    colab = f"{COLAB}/github/{owner_repo}/blob/{branch}/"
    minimum = re.fullmatch(r">=\s*([\d.]+)", requires_python.strip())
    python = f"{minimum.group(1)} or newer" if minimum else requires_python

    def row(page: str) -> str:
        return f"| {_title(course_root / page)} | `{page}` | [Open in Colab]({colab}{page}) |"

    chapters = [p for p in pages if not p.startswith("labs/")]
    labs = [p for p in pages if p.startswith("labs/")]
    return f"""# Self-supervised learning for computer vision

An open course on learning visual representations without labels: a book of chapters you can
read and run, lab notebooks you complete and hand in for a grade, and `sslcourse`, a small
Python package that implements every method of the course with one GPU-aware training loop.
Every chapter and lab runs in minutes on a laptop CPU, on handwritten digits that ship with
scikit-learn (no download), and at full speed on a free Colab GPU.

| part | where |
| --- | --- |
| the book | `book/` (chapters as notebooks; `_config.yml` and `_toc.yml` build it with Jupyter Book) |
| the labs | `labs/labNN_*/labNN_*.ipynb` |
| the package | `sslcourse/` (`import sslcourse`) |

## On Colab (nothing to install)

Click a link below (or the rocket button, *Open in Colab*, on any page of the book). The first
cell of every notebook installs the course package (`pip install git+{url}`) and prints the
device it found. For a GPU: *Runtime > Change runtime type > T4 GPU*, then run all.

| lab | file | |
| --- | --- | --- |
{chr(10).join(row(p) for p in labs)}

| chapter | file | |
| --- | --- | --- |
{chr(10).join(row(p) for p in chapters)}

## On your own machine

With Python {python}, from the folder of this repository:

```bash
python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt -r requirements.txt -e .
jupyter lab                      # then open labs/labNN_*/labNN_*.ipynb, or a chapter in book/
jupyter-book build .             # optional: the book as HTML in _build/html/ (runs every chapter, a few minutes)
```

## Doing a lab

Fill in every function marked `YOUR CODE HERE` and run the test cell after it: the visible tests
say what is wrong. Your instructor's grader runs further tests. Do not edit, delete or reorder
the other cells (the grader recognises them), and write your reflections in the answer cells
marked `YOUR ANSWER HERE`. On Colab, *File > Save a copy in Drive* keeps your work between
sessions. Before handing in, restart the kernel and run every cell.

## Handing in

- **On Colab**: *File > Download > Download .ipynb*, then upload that file to the course's
  learning management system **unchanged, keeping its file name** (for example
  `lab01_denoising_autoencoders.ipynb`; if Colab or your browser added "Copy of" or "(1)" to the
  name, remove that and nothing else).
- **Locally**: upload `labs/<lab>/<lab>.ipynb` itself, unchanged, with its file name.
"""


def publish(course_root: str | os.PathLike, out: str | os.PathLike, *, force: bool = False, check_leaks: bool = True) -> PublishReport:
    """Write the public student edition of the course at ``course_root`` into the folder ``out``.

    Refuses an ``out`` that is the course root, lies inside it or contains it, and a non-empty
    ``out`` unless ``force`` (then everything in it except a top-level ``.git`` is replaced, so a
    checkout of the public repository can be refreshed in place). Before writing anything it
    checks that the edition will build and open the right repository: ``_config.yml``'s
    ``repository.url`` is ``sslcourse.notebook.REPOSITORY_URL`` (read from the course itself), the
    Colab URL is set, every page of ``_toc.yml`` travels, and every notebook of the edition starts
    with ``SETUP_CELL`` and links only to notebooks of the edition and of that repository.
    Notebooks are copied byte for byte.

    With ``check_leaks`` (the default) it then runs :func:`leak_check` on what it wrote and raises
    :class:`LeakError` (leaving the files for inspection) if any secret line is there.
    """
    course_root = Path(course_root).resolve()
    out = Path(out).resolve()
    missing = [name for name in REQUIRED if not (course_root / name).is_file()]
    if missing or not (course_root / "labs").is_dir():
        raise PublishError(f"expected a course repository at {course_root} (with {', '.join(REQUIRED)} and labs/); missing: {missing or ['labs/']}")
    if out == course_root or course_root in out.parents:
        raise PublishError(f"the student edition must be written outside the course repository; {out} is inside {course_root}")
    if out in course_root.parents:
        raise PublishError(f"the student edition's folder {out} contains the course repository {course_root}; choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise PublishError(f"expected {out} to be a folder for the student edition; it is a file")
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing and not force:
        raise PublishError(f"{out} is not empty ({', '.join(existing[:5])}{', ...' if len(existing) > 5 else ''}); pass force=True to replace its contents")

    files = _course_files(course_root)
    chosen = [name for name in files if _travels(name)]
    chosen_set = set(chosen)
    url, branch, setup_cell = _check_book(course_root, chosen_set)
    notebooks = [name for name in chosen if name.endswith(".ipynb")]
    _check_notebooks(course_root, notebooks, chosen_set, url, branch, setup_cell)
    pages = [f"{p}.ipynb" for p in _toc_files(_load_yaml(course_root / "_toc.yml")) if f"{p}.ipynb" in chosen_set]
    requires = (_load_pyproject(course_root).get("project") or {}).get("requires-python", ">=3.10")
    readme = _readme(course_root, url, branch, pages, requires)
    needles = _collect(course_root) if check_leaks else None  # fails before writing where there are no solutions

    out.mkdir(parents=True, exist_ok=True)
    for name in existing:
        if name == ".git":
            continue
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    for name in chosen:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(course_root / name, target)
    (out / "README.md").write_text(readme, encoding="utf-8")

    secrets = None
    if needles is not None:
        secrets = len({secret for entries in needles.values() for secret in entries})
        leaks = _scan(needles, [(out, None)])
        if leaks:
            raise LeakError(f"the student edition written to {out} leaks answers; do not publish it\n{format_leaks(leaks)}", leaks)
    return PublishReport(
        edition=out,
        repository_url=url,
        files=tuple(sorted(chosen_set | {"README.md"})),
        left_out=tuple(name for name in files if name not in chosen_set),
        notebooks=tuple(notebooks),
        secret_lines=secrets,
    )


def _load_pyproject(course_root: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        return {}
    try:
        return tomllib.loads((course_root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PublishError(f"expected a readable pyproject.toml in {course_root}: {err}") from err
