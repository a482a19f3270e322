"""Loading users' models from a hub id or a folder: quiet libraries and one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from noiseppo.errors import UserError, error_line


@contextmanager
def quiet() -> Iterator[None]:
    """Silence diffusers' and transformers' warnings (hub retries, an absent torchvision) and
    loading bars: they would bury the one line a user error gets."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    saved = [(lib.get_verbosity(), lib.is_progress_bar_enabled()) for lib in libraries]
    for lib in libraries:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, (verbosity, bar) in zip(libraries, saved, strict=True):
            lib.set_verbosity(verbosity)
            if bar:
                lib.enable_progress_bar()


def unreachable(error: BaseException) -> bool:
    """Whether a failed load comes down to the hub being out of reach (libraries wrap the cause)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)):
            return True
        if type(seen).__module__.startswith(("httpx", "requests")):  # huggingface_hub's transport
            return "connect" in type(seen).__name__.lower() or "timeout" in type(seen).__name__.lower()
        seen = seen.__cause__ or seen.__context__
    return False


def load_error(what: str, model: str, error: BaseException) -> UserError:
    """The one line for ``what`` (e.g. "the diffusers pipeline") that failed to load from ``model``."""
    if unreachable(error):
        return UserError(
            f"model '{model}' is neither a local folder nor in the Hugging Face cache, and the hub cannot be "
            "reached (offline?): download it first or give a local folder"
        )
    return UserError(f"cannot load {what} '{model}': {error_line(error)}")
