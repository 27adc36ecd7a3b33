"""Where gatec's outputs go, and what they may replace: every folder and file gatec writes for a
user goes through here.

The rules:

- A folder (`compile -o`) may replace only an earlier gatec artifact (its manifest.json holds
  "gatec_version" and "target") or an empty folder; `force` replaces any folder. Never a file,
  and never, even with `force`, the current folder, the model's folder, or a folder holding
  either.
- A file (`quantize -o`, every `--json`, the plots beside them) may replace only a file gatec
  wrote: an .onnx holding gatec's "gatec" metadata property, a .png beside a file of the same
  stem that gatec wrote, any other file a JSON object with the key "gatec_version" (every JSON
  report gets it); `force` replaces any file. Never a folder, and never the model itself.
- A refusal is a GatecError naming the path (the CLI's one line, exit 2), raised before anything
  is touched; so is a failure to create, lock or replace.
- Everything is written beside its place first (`.NAME.xxxx`) and moved in once complete. A
  folder is built under a lock (`.NAME.lock` beside it, removed afterwards), so that compiles to
  the same output take turns; the temporary files a build makes (its own, and those of yosys,
  iverilog, the C compilers, hls4ml) go under the same `.NAME.xxxx`, and SIGTERM unwinds like
  Ctrl-C, so that one removal leaves nothing behind.
- New folders and files get the umask's permissions (0777 / 0666 & ~umask), as with any tool.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from .errors import GatecError
from .version import __version__

MARKER = "gatec_version"  # the key of every JSON object gatec writes: manifest.json and reports
TEMP_VARS = ("TMPDIR", "TEMP", "TMP")  # where Python's tempfile and the tools gatec runs put temporary files
MAX_REPORT_BYTES = 1 << 24  # a larger file is no report of gatec's: not parsed
_building = threading.RLock()  # the temporary-files folder is process-wide: builds in one process take turns
_umask_lock = threading.Lock()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `finally` on the way out cleans up."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_unwinds():
    """Within it, SIGTERM raises Terminated. Only the main thread can set handlers (and Python runs
    them there); a SIGTERM the caller ignores stays ignored."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_IGN, None):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait while cleaning up, so that a second one cannot cut a removal short;
    a pending one is raised right after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def umask() -> int:
    with _umask_lock:  # reading it means setting it; for that instant, to the stricter 077
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def _reported(what: str, path):
    """An OSError as the one-line GatecError."""
    try:
        yield
    except OSError as e:
        raise GatecError(f"cannot {what} {path}: {e.strerror or e}") from None


def _holds(folder: Path, path: Path) -> bool:
    return folder == path or folder in path.parents


def _check_parent(path: Path) -> None:
    """The nearest existing folder above `path` must be a folder (then the rest can be made)."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists():
            if not parent.is_dir():
                raise GatecError(f"cannot write {path}: {parent} is not a folder")
            return


def _json_object(path: Path) -> dict | None:
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_artifact(folder: Path) -> bool:
    """A folder gatec compiled: its manifest.json names gatec's version and the target."""
    manifest = _json_object(Path(folder) / "manifest.json")
    return manifest is not None and MARKER in manifest and "target" in manifest


def written_by_gatec(path: Path) -> bool:
    """Whether gatec wrote this file, by the markers in the module's rules."""
    path = Path(path)
    if not path.is_file():  # a folder, a FIFO, a device: never read, never gatec's
        return False
    suffix = path.suffix.lower()
    if suffix == ".png":  # gatec's plots carry no marker; they sit beside their report
        return any(p != path and p.suffix.lower() != ".png" and written_by_gatec(p)
                   for p in path.parent.glob(glob.escape(path.stem) + ".*"))
    if suffix == ".onnx":
        try:
            import onnx
            model = onnx.load(str(path), load_external_data=False)
        except Exception:  # not ONNX at all
            return False
        return any(p.key == "gatec" for p in model.metadata_props)
    return MARKER in (_json_object(path) or {})


def check_folder(output: str | Path, force: bool = False, protect=()) -> None:
    """Refuses (GatecError) a folder output the rules do not let gatec replace; `protect`: the
    model files, whose folders are never replaced."""
    output = Path(output)
    real = output.resolve()
    if _holds(real, Path.cwd().resolve()):
        raise GatecError(f"{output} is the current folder or holds it; choose another output folder")
    for p in protect:
        if _holds(real, Path(p).resolve()):
            raise GatecError(f"{output} holds the model {p}; choose another output folder")
    _check_parent(output)
    if not os.path.lexists(output):
        return
    if output.is_symlink() or not output.is_dir():
        raise GatecError(f"{output} exists and is not a folder; remove it or choose another output")
    with _reported("read", output):
        if force or is_artifact(output) or not any(output.iterdir()):
            return
    raise GatecError(f"{output} is a folder gatec did not write (it holds no gatec manifest.json); "
                     f"--force replaces it")


def check_file(path: str | Path, force: bool = False, protect=()) -> None:
    """Refuses (GatecError) a file the rules do not let gatec replace; `protect`: the model files."""
    path = Path(path)
    for p in protect:
        if path.resolve() == Path(p).resolve():
            raise GatecError(f"{path} is the model; choose another file")
    _check_parent(path)
    if path.is_dir():
        raise GatecError(f"{path} is a folder; name a file")
    if os.path.lexists(path) and not force and not written_by_gatec(path):
        raise GatecError(f"{path} exists and gatec did not write it; --force replaces it")


def check_files(paths, force: bool = False, protect=()) -> None:
    """All of them, before the first is written (a plot's check reads the report beside it)."""
    for p in paths:
        check_file(p, force, protect)


@contextlib.contextmanager
def replacing_file(path: str | Path, force: bool = False, protect=()):
    """Yields a new temporary path beside `path` (same suffix) to write; it replaces `path` when the
    block ends without an error, and is removed otherwise."""
    path = Path(path)
    check_file(path, force, protect)
    with sigterm_unwinds():
        with _reported("write", path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
            os.close(fd)
        try:
            yield Path(tmp)
            with _reported("write", path):
                os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 is for the file's short life as a temporary
                os.replace(tmp, path)
        finally:
            with _signals_held(), contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_file(path: str | Path, data: bytes, force: bool = False, protect=()) -> None:
    with replacing_file(path, force, protect) as tmp:
        tmp.write_bytes(data)


def write_report(path: str | Path, report: dict, force: bool = False, protect=()) -> None:
    """A JSON report, with the marker that lets a later run replace it."""
    text = json.dumps({**report, MARKER: __version__}, indent=2, sort_keys=True) + "\n"
    write_file(path, text.encode(), force, protect)


@contextlib.contextmanager
def _locked(output: Path):
    """An exclusive flock on `.NAME.lock` beside the output, removed afterwards. A waiter that
    wakes up holding a lock file already removed opens the new one, so that two never hold it."""
    lock = output.parent / f".{output.name}.lock"
    while True:
        with _reported("lock", output):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        with _signals_held():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # while still held: a waiter then sees it gone and retries
            os.close(fd)


@contextlib.contextmanager
def _temporary_files_in(folder: Path):
    """Python's tempfile and the tools gatec starts put their temporary files in `folder`."""
    folder.mkdir()
    saved = tempfile.tempdir, {k: os.environ.get(k) for k in TEMP_VARS}
    tempfile.tempdir = str(folder)
    os.environ.update(dict.fromkeys(TEMP_VARS, str(folder)))
    try:
        yield
    finally:
        tempfile.tempdir = saved[0]
        for k, v in saved[1].items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _place(folder: Path, output: Path, work: Path) -> None:
    """Moves `folder` to `output`; what was there goes into `work`, and back if the move fails."""
    with _reported("replace", output):
        old = None
        if os.path.lexists(output):
            old = work / "old"
            os.replace(output, old)
        try:
            os.replace(folder, output)
        except BaseException:
            if old is not None:
                os.replace(old, output)
            raise


def write_folder(build, output: str | Path, force: bool = False, protect=(), then=None):
    """Runs `build(folder)` on a new folder and puts it at `output`, by the rules above. Returns
    `then(output)`, called while the output is still locked (so that it opens this build's
    folder, not a concurrent one's), or None."""
    shown = Path(output)
    output = Path(os.path.abspath(output))
    check_folder(shown, force, protect)  # before anything is made: a refusal leaves nothing
    with sigterm_unwinds(), _building:
        with _reported("create the folder for", shown):
            output.parent.mkdir(parents=True, exist_ok=True)
        with _locked(output):
            check_folder(shown, force, protect)  # again: a compile that held the lock may have placed one
            with _reported("write beside", shown):
                work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
            try:
                folder = work / output.name
                folder.mkdir()  # 0777 & ~umask, where mkdtemp gives 0700
                with _temporary_files_in(work / "tmp"):
                    build(folder)
                _place(folder, output, work)
                return then(shown) if then else None
            finally:
                with _signals_held():
                    shutil.rmtree(work, ignore_errors=True)
