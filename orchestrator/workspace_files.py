"""Files that cross between a chat and a working directory: the names, the paths that may be
read, and the blocking writes and reads (callers hop off the event loop with `disk.run_sync`).

- **Names from users** (`safe_name`): a document's name is the sender's; it never carries a
  folder, a leading dot (a hidden file, ``.env``, ``..``), control or invisible characters,
  and it stays within `NAME_BYTES` bytes.
- **Never overwrite** (`save_new`): a file lands under a free name (``report (2).pdf``),
  created with ``O_EXCL`` so that even a file that appears meanwhile is not replaced, in a
  folder opened without following a symlink.
- **What ``/get`` may read** (`readable_target`): a path inside the working directory once
  every symlink is resolved, never inside ``state_dir``, never a ``.env`` file (nor
  ``.env.local``, ``.envrc`` and the like: `is_env_file`), never a ``.git`` folder or
  anything in one (`in_git_folder`: its ``config`` can hold a remote's credentials);
  a file with other names (a hard link) is refused, as it could be a private file under
  another name; `zip_folder` skips symlinks, ``.git``, those files and hard links, and stops
  past the size limit as it grows, past `MAX_ZIP_DEPTH` and past `MAX_ZIP_ENTRIES`.
  The agent can write the working directory while it is read: `read_limited` and
  `zip_folder` open the resolved path one component at a time and follow no symlink, so a
  file or folder swapped for a link after the check (to the bot's config, Codex's login)
  is refused, never read.
- **Photos** (`store_image`, `prune_images`): private files under ``state_dir/images`` (0600
  in 0700), deleted after the retention period. They never go into the working directory:
  Codex gets their path as a ``localImage`` input.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import stat
import time
import unicodedata
import zipfile
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Final, TypeAlias

from orchestrator.disk import FILE_MODE, NO_FOLLOW_READ, ensure_folder
from orchestrator.redaction import redact, redact_bytes
from orchestrator.words import echo

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from collections.abc import Set as AbstractSet

__all__ = [
    "NAME_BYTES",
    "Identity",
    "Refused",
    "TooBig",
    "echoed_path",
    "identities",
    "in_git_folder",
    "is_env_file",
    "is_own",
    "prune_images",
    "read_limited",
    "readable_target",
    "safe_name",
    "save_new",
    "store_image",
    "zip_folder",
]

NAME_BYTES: Final = 200
"""Bytes of a saved file's name (file systems take 255; room is left for `` (2)``)."""

FREE_NAME_TRIES: Final = 1000
"""Numbered names tried before giving up (``name (2)`` … ``name (1000)``)."""

PATH_ECHO_LIMIT: Final = 100
"""A path a refusal names is cut to this: a pasted 5,000-character path comes back as one
line, not as three messages."""

SKIPPED_IN_ZIP: Final = frozenset({".git", ".env"})
"""Names a folder's zip leaves out: the repository's object store, and secrets."""

MAX_ZIP_DEPTH: Final = 64
"""Folders a zip goes into, one inside the other: the agent can plant a folder thousands
deep, and its names would outgrow what a zip entry can name (64 KB)."""

MAX_ZIP_ENTRIES: Final = 20_000
"""Names (files, folders, and what is left out) a zip looks at: each file adds headers and
a record in memory however small it is, so an agent's million empty files must stop early."""

ZIP_CENTRAL_RECORD: Final = 46
"""Bytes of a file's record in the zip's central directory, besides its name: written at the
end, so counted ahead as the files go in."""

ZIP_END: Final = 22
"""Bytes of the zip's end record."""


class Refused(Exception):
    """A path ``/get`` will not send; `str()` says why in the user's words."""


class TooBig(Exception):
    """The file or folder is larger than the limit; `size` is how much was counted: the
    file's own size when `exact`, else a count that stopped past the limit (a folder's files,
    its zip, a file that grew while read), which says only "more than the limit"."""

    def __init__(self, size: int, *, exact: bool = False) -> None:
        self.size = size
        self.exact = exact
        super().__init__(f"{size} bytes")


def safe_name(name: str, *, fallback: str = "file") -> str:
    """`name` fit to be a file name in the inbox: its last path part only (``/`` and ``\\``
    both count), without control, format (bidi, zero-width) or other invisible characters,
    without leading dots or spaces, cut to `NAME_BYTES` bytes (the extension kept); `fallback`
    when nothing is left."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(
        " " if unicodedata.category(ch) in ("Zs", "Zl", "Zp") else ch
        for ch in last
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    kept = " ".join(kept.split()).lstrip(". ").rstrip(" ")
    if not kept:
        return fallback
    stem, dot, suffix = kept.rpartition(".")
    if not dot or not stem or len(suffix.encode()) > 20:
        stem, suffix = kept, ""
    suffix = f".{suffix}" if suffix else ""
    room = NAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
    return f"{stem}{suffix}" if stem else fallback


def save_new(root: Path, folder: PurePosixPath, name: str, data: bytes) -> PurePosixPath:
    """Write `data` to `folder`/`name` under `root`, or to ``name (2)``, ``name (3)``… when
    it exists (blocking); the path written, relative to `root`. Creates the folder; never
    overwrites, and never writes (or creates a folder) through a symlink: the folder is made
    and opened from `root` one component at a time (the agent could swap a part of it for a
    link meanwhile).

    Raises:
        Refused: a part of the folder is no longer what was checked (a link now, or gone).
        FileExistsError: no free name within `FREE_NAME_TRIES`.
        OSError: the disk refused; a half-written file is removed.
    """
    stem, suffix = _split(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    opened = _open_inside(root, folder, folder=True, doing="saving into it", create=True)
    try:
        for number in range(1, FREE_NAME_TRIES + 1):
            candidate = name if number == 1 else f"{stem} ({number}){suffix}"
            try:
                descriptor = os.open(candidate, flags, 0o644, dir_fd=opened)
            except FileExistsError:
                continue
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(candidate, dir_fd=opened)
                raise
            return folder / candidate
    finally:
        os.close(opened)
    raise FileExistsError(f"no free name for {name} in {folder}")


def _split(name: str) -> tuple[str, str]:
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, f".{suffix}"


_ENV_FILE: Final = re.compile(r"\.env(rc)?([._~-].*)?", re.IGNORECASE)


def is_env_file(name: str) -> bool:
    """Whether a file named `name` is one of the ``.env`` family that holds secrets by
    convention: ``.env``, ``.env.production``, ``.env.local``, ``.env~``, ``.envrc``, any
    case (not ``.environment``)."""
    return _ENV_FILE.fullmatch(name) is not None


def in_git_folder(path: PurePath) -> bool:
    """Whether `path` is a ``.git`` folder (or file: a worktree's pointer) or lies in one,
    any case: git's own data, whose ``config`` can hold a remote's credentials."""
    return any(part.casefold() == ".git" for part in path.parts)


def in_git_work_tree(folder: Path) -> bool:
    """Whether `folder` looks like part of a git work tree: a ``.git`` file (a worktree's or
    a submodule's pointer) or a ``.git`` folder (or a link to one, as Android's ``repo``
    makes) with a ``HEAD`` in it, in `folder` or in a folder above it (blocking: a few
    ``lstat``). What decides whether a result offers "Show diff": without git the bot cannot
    tell what changed. An empty ``.git`` folder is passed over, as git passes it over: Codex
    0.171.0's sandbox leaves one in each writable root (the mount point of its read-only
    ``.git`` bind) once a command ran there, the working directory and /tmp included.
    `GIT_DIR` and the like are not looked at: git's answer at the press stays the
    authority, and says why when it differs."""
    for candidate in (folder, *folder.parents):
        dot_git = candidate / ".git"
        try:
            mode = os.lstat(dot_git).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) or os.path.lexists(dot_git / "HEAD"):  # a link to one too
            return True
    return False


Identity: TypeAlias = tuple[int, int]
"""A file's device and inode: the same file under any name, a hard link included."""


def identities(paths: Iterable[str]) -> frozenset[Identity]:
    """The identities of those of `paths` that exist (blocking): the bot's own files, which
    ``/get`` refuses whatever they are called where it finds them."""
    found = set()
    for path in paths:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            found.add((info.st_dev, info.st_ino))
    return frozenset(found)


def is_own(info: os.stat_result, own: AbstractSet[Identity]) -> bool:
    """Whether the file `info` describes is one of the `own` files (under any name)."""
    return (info.st_dev, info.st_ino) in own


def readable_target(
    workspace: Path, requested: str, state_dir: Path, own: AbstractSet[Identity] = frozenset()
) -> Path:
    """The file or folder ``/get`` `requested` (relative to `workspace`, or absolute inside
    it), every symlink resolved (blocking).

    Raises:
        Refused: it is outside the working directory (also through a symlink), inside
            ``state_dir``, a ``.env`` file, in a ``.git`` folder (as asked, or once
            resolved), missing, or neither a file nor a folder.
    """
    asked = requested.strip()
    if not asked:
        raise Refused("Say which file: /get PATH (relative to the working directory).")
    text = echoed_path(asked)  # how the refusals below name it
    if not text:
        raise Refused("That path is only invisible characters. Say which file: /get PATH.")
    outside = f"{text} is outside the working directory; I only send files from there."
    missing = f"There is no {text} in the working directory."
    if "\0" in asked:  # a message can carry one, a path cannot
        raise Refused(missing)
    root = workspace.resolve()
    try:
        given = Path(asked).expanduser() if asked.startswith("~") else Path(asked)
    except RuntimeError:  # ~name of no user here: not under the working directory either
        raise Refused(outside) from None
    if in_git_folder(_within(given, workspace, root)):
        raise _git_data(text)
    candidate = given if given.is_absolute() else root / given
    try:
        target = candidate.resolve(strict=True)
    except (OSError, RuntimeError) as error:  # RuntimeError: a link loop (Python 3.11)
        if isinstance(error, OSError) and error.errno in (errno.ENOENT, errno.ENAMETOOLONG):
            raise Refused(missing) from None
        raise Refused(f"{text} cannot be read (a broken or looping link).") from None
    if not target.is_relative_to(root):
        raise Refused(outside)
    if target.is_relative_to(state_dir.resolve()):
        raise Refused(f"{text} belongs to the bot itself; I don't send those.")
    if in_git_folder(target.relative_to(root)):
        raise _git_data(text)
    if is_env_file(target.name) or is_env_file(given.name):
        raise Refused(f"{text} holds secrets (a .env file); I don't send those.")
    info = target.stat()
    if is_own(info, own):
        raise Refused(f"{text} is one of the bot's own files; I don't send those.")
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise Refused(f"{text} is neither a file nor a folder.")
    if _hard_linked(info):
        raise Refused(
            f"{text} has other names on this disk (hard links), so I don't send it: one of "
            "them could be a file the bot keeps private."
        )
    return target


def _withheld(info: os.stat_result, own: AbstractSet[Identity]) -> bool:
    """Whether a file read after the check (or in a folder's zip) is one ``/get`` does not
    send: one of the bot's `own`, or one with other names."""
    return is_own(info, own) or _hard_linked(info)


def _hard_linked(info: os.stat_result) -> bool:
    """Whether `info` is a regular file with other names: one the agent linked to a file it
    may not read (a session file, Codex's login; an old copy of the config the bot no longer
    knows by its identity). A working tree has none; ``/get`` and zips pass them over."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink > 1


def echoed_path(requested: str) -> str:
    """A path the user asked for, as the bot's answers name it: on one line, cut to
    `PATH_ECHO_LIMIT`, without direction controls."""
    return echo(requested.strip(), PATH_ECHO_LIMIT)


def _within(given: Path, *folders: Path) -> PurePath:
    """`given` as asked, from the first of `folders` it starts with (the folders above the
    working directory are not the user's to name)."""
    for folder in folders:
        if given.is_relative_to(folder):
            return given.relative_to(folder)
    return given


def _git_data(text: str) -> Refused:
    return Refused(
        f"{text} is git's own data (a .git folder, which can hold the remote's password or "
        "token); I don't send those."
    )


def read_limited(
    root: Path, relative: PurePosixPath, limit: int, own: AbstractSet[Identity] = frozenset()
) -> bytes:
    """The bytes of the regular file `relative` under the folder `root` (blocking), read
    without following any symlink (see the module docstring).

    Raises:
        Refused: a part of the path is no longer what was checked (a link now, or gone),
            or it is one of the bot's `own` files (swapped in after the check).
        TooBig: it is larger than `limit`.
    """
    read = _read_regular(_open_inside(root, relative, folder=False), limit)
    if read is None or _withheld(read[1], own):
        raise _changed(relative)
    return read[0]


def zip_folder(
    root: Path,
    relative: PurePosixPath,
    limit: int,
    *,
    secrets: Sequence[str] = (),
    own: AbstractSet[Identity] = frozenset(),
) -> tuple[bytes, int]:
    """The folder `relative` under `root` as a zip (deflated), with the number of files in
    it (blocking). Symlinks are left out and never followed (they could lead out of the
    folder), and so are `SKIPPED_IN_ZIP`, the bot's `own` files under any name, files with
    other names (hard links), and anything but regular files and folders. Each file, and each
    name in the zip, is redacted (`secrets`, and anything shaped like a bot token) before it
    is compressed: no redaction can look into the zip afterwards (the sender's pass over its
    bytes would break a name it found there).

    Raises:
        Refused: the folder is no longer what was checked (a link now, or gone), or it goes
            deeper than `MAX_ZIP_DEPTH` or holds more than `MAX_ZIP_ENTRIES` names.
        TooBig: the files or the zip grow past `limit` bytes (checked file by file).
    """
    top = _open_inside(root, relative, folder=True)
    buffer = io.BytesIO()
    counted = 0
    directory = ZIP_END  # the central directory still to come, and the end record
    files = 0
    try:
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for folder, name, path in _Walk(relative).files(top):
                room = min(limit - counted, limit - buffer.tell() - directory)
                try:
                    entry = _read_entry(folder, name, room)
                except TooBig as error:  # the folder's count, not that file's size
                    raise TooBig(counted + error.size) from None
                if entry is None or _withheld(entry[1], own):
                    continue
                data, info = entry
                counted += len(data)
                arcname = redact(path.as_posix(), secrets)
                archive.writestr(_zip_info(arcname, info), redact_bytes(data, secrets))
                files += 1
                directory += ZIP_CENTRAL_RECORD + len(arcname.encode())
                if buffer.tell() + directory > limit:
                    raise TooBig(buffer.tell() + directory)
    finally:
        os.close(top)
    data = buffer.getvalue()
    if len(data) > limit:
        raise TooBig(len(data))
    return data, files


_TOP: Final = PurePosixPath()
"""The folder being zipped, as the zip names it (its files have no folder before them)."""


class _Walk:
    """The regular files under a folder, for a zip: in name order, a folder's files before
    its folders; no symlink followed, and every folder opened so that it can be nothing else
    (a FIFO swapped in for it fails at once instead of waiting for a writer), within
    `MAX_ZIP_DEPTH` and `MAX_ZIP_ENTRIES` (`os.fwalk` is recursive, and opens each folder
    with a plain open after it looked at it)."""

    def __init__(self, relative: PurePosixPath) -> None:
        self.relative = relative
        self.entries = 0

    def files(
        self, folder: int, path: PurePosixPath = _TOP, depth: int = 0
    ) -> Iterator[tuple[int, str, PurePosixPath]]:
        """(the open folder, the file's name in it, its path in the zip) of each file."""
        folders = []
        for name in sorted(os.listdir(folder)):
            self.entries += 1
            if self.entries > MAX_ZIP_ENTRIES:
                raise Refused(
                    f"{self.relative.as_posix()} holds more than {MAX_ZIP_ENTRIES:,} files and "
                    "folders, too many to zip. Ask for a folder inside it."
                )
            if name in SKIPPED_IN_ZIP or is_env_file(name):
                continue
            try:
                mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(mode):
                folders.append(name)
            elif stat.S_ISREG(mode):
                yield folder, name, path / name
        for name in folders:
            if depth == MAX_ZIP_DEPTH:
                raise Refused(
                    f"{self.relative.as_posix()} has folders more than {MAX_ZIP_DEPTH} deep, "
                    "too deep to zip. Ask for a folder inside it."
                )
            try:
                child = os.open(name, NO_FOLLOW_READ | os.O_DIRECTORY, dir_fd=folder)
            except OSError as error:  # swapped meanwhile for a link, a FIFO, or gone
                if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    continue
                raise
            try:
                yield from self.files(child, path / name, depth + 1)
            finally:
                os.close(child)


def _open_inside(
    root: Path,
    relative: PurePosixPath,
    *,
    folder: bool,
    doing: str = "reading it",
    create: bool = False,
) -> int:
    """A descriptor of `relative` under `root`, opened one component at a time from `root`
    with no symlink followed (blocking); `folder`: it must be a folder, and `create`: its
    missing parts are made (in the folder opened so far, so never through a link). `doing`
    says what for, in the refusal when a part of it changed."""
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = relative.parts
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = NO_FOLLOW_READ | (os.O_DIRECTORY if folder or not last else 0)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=descriptor)
            try:
                child = os.open(part, flags, dir_fd=descriptor)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise _changed(relative, doing) from None
                raise
            os.close(descriptor)
            descriptor = child
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _read_entry(folder: int, name: str, room: int) -> tuple[bytes, os.stat_result] | None:
    """The bytes and status of the regular file `name` in the open `folder`; None for a
    link, a FIFO or anything else, or one gone meanwhile; `TooBig` past `room` bytes."""
    try:
        descriptor = os.open(name, NO_FOLLOW_READ, dir_fd=folder)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO, errno.EISDIR):
            return None
        raise
    return _read_regular(descriptor, room)


def _read_regular(descriptor: int, limit: int) -> tuple[bytes, os.stat_result] | None:
    """The bytes and status of the open `descriptor` (closed here) if it is a regular file,
    else None; `TooBig` past `limit` bytes, by its size or by what was read."""
    try:
        info = os.fstat(descriptor)
    except BaseException:
        os.close(descriptor)
        raise
    if not stat.S_ISREG(info.st_mode):  # a folder swapped in, a FIFO: fdopen would refuse
        os.close(descriptor)
        return None
    with os.fdopen(descriptor, "rb") as handle:
        if info.st_size > limit:
            raise TooBig(info.st_size, exact=True)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooBig(len(data))
    return data, info


def _zip_info(arcname: str, info: os.stat_result) -> zipfile.ZipInfo:
    """What `zipfile.ZipFile.write` would record for a file: its name, time and mode."""
    stamp = max(time.localtime(info.st_mtime)[:6], (1980, 1, 1, 0, 0, 0))
    entry = zipfile.ZipInfo(arcname, date_time=stamp)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = (info.st_mode & 0xFFFF) << 16
    return entry


def _changed(relative: PurePosixPath, doing: str = "reading it") -> Refused:
    verdict = "did not save the file" if doing.startswith("saving") else "did not send it"
    return Refused(
        f"{relative.as_posix()} changed while I was {doing} (a part of it is now a link, "
        f"or gone), so I {verdict}."
    )


def store_image(images: Path, data: bytes, suffix: str) -> Path:
    """Keep `data` as a private file (0600) under `images` (0700) with an unguessable name
    (blocking); `suffix` (``.jpg``) lets Codex tell its type."""
    ensure_folder(images)
    os.chmod(images, 0o700)
    path = images / f"{secrets.token_hex(8)}{suffix}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(path, flags, FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return path


def prune_images(images: Path, *, now: float, retention: float) -> int:
    """Delete the files in `images` last modified more than `retention` seconds before `now`
    (wall-clock seconds, as file times are); returns how many (blocking). A missing folder
    is nothing to do."""
    removed = 0
    try:
        entries = list(os.scandir(images))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                continue
            if now - info.st_mtime > retention or not stat.S_ISREG(info.st_mode):
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
