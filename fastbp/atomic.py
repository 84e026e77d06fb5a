"""Atomic file writes: a crash or an error never leaves a half-written file or harms the old one."""
import os
import secrets


def check_target(path, what="model file"):
    """Whether ``path`` can take a new file: its directory exists and is writable, and it is not a directory
    itself; else FileNotFoundError, PermissionError or IsADirectoryError naming ``what`` and the path. Returns
    the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what} {path} must be in an existing directory; got no directory "
                                f"{directory}.")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path} must be in a directory this process may write to; got "
                              f"{directory}, which it may not.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path} must name a file; got a directory.")
    return directory


def atomic_write(path, write, what="model file"):
    """Call ``write(binary file)`` on a fresh file beside ``path``, sync it, then move it onto ``path``: readers
    see the old file or the new one, never a part. ``what`` names the file in errors."""
    directory = check_target(path, what)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # 0o666 minus the umask, like any new file
            break
        except FileExistsError:
            continue
        except OSError as exc:  # e.g. a read-only file system: name the file asked for, not the temporary one
            raise type(exc)(exc.errno, f"cannot write {what} {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    # Makes the rename itself durable; not possible on every platform, and then only durability is lost.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
