"""Errors a user can cause. Each carries one sentence that says what went wrong and what to do;
the operators, the CLI and the batch runner show that sentence instead of a traceback."""
from __future__ import annotations

import errno


class PBRForgeError(Exception):
    """A problem with the user's input or set-up (not a bug)."""


class ImageReadError(PBRForgeError):
    """An image file that cannot be read or decoded."""


class ManifestError(PBRForgeError):
    """The models folder does not match its manifest (missing, changed or incompatible files)."""


class ModelRuntimeError(PBRForgeError):
    """onnxruntime could not load or run a model with the chosen execution provider."""


class ConversionCancelled(PBRForgeError):
    """The user cancelled a running conversion; nothing was written."""


class OutputFolderBusy(PBRForgeError):
    """Another PBR Forge run holds the lock on the output folder."""


class OutputExists(PBRForgeError):
    """An output file is already there and the Overwrite Existing Files preference is off."""

    def __init__(self, path):
        super().__init__(f"'{path}' already exists; turn on Overwrite Existing Files in the PBR Forge "
                         "preferences or choose another output folder.")


def user_sentence(exc: BaseException, what: str) -> str:
    """The one sentence shown for an exception raised while trying to `what` (e.g. "write the
    outputs"). Unexpected exception types say so, so they get reported instead of hidden."""
    if isinstance(exc, PBRForgeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return (f"There was not enough memory to {what}; close other programs, use a smaller --tile "
                "or convert a smaller copy of the texture.")
    if isinstance(exc, OSError):
        where = f" '{exc.filename}'" if exc.filename else ""
        advice = _OS_ERROR_ADVICE.get(exc.errno, "check free disk space and folder permissions")
        return f"Could not {what}{where}: {exc.strerror or exc}; {advice}."
    return f"Internal error while trying to {what} ({type(exc).__name__}: {exc}); please report it."


# What to do about the OS errors a user meets when writing; others get the generic advice.
_OS_ERROR_ADVICE = {
    errno.ENOSPC: "free some disk space or choose an output folder on another drive",
    errno.EACCES: "check the folder's permissions or choose another output folder",
    errno.EPERM: "check the folder's permissions or choose another output folder",
    errno.EROFS: "the drive is read-only; choose another output folder",
    errno.ENAMETOOLONG: "shorten the texture's name or the output folder's path",
    errno.ENOTDIR: "a file is in the way of a folder; move it or choose another output folder",
    errno.EISDIR: "a folder is in the way of a file; move it or choose another output folder",
    errno.EEXIST: "a file is in the way of a folder; move it or choose another output folder",
}
