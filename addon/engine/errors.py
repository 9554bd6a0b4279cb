"""Errors a user can cause. Each carries one sentence that says what went wrong and what to do;
the operators, the CLI and the batch runner show that sentence instead of a traceback."""


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
