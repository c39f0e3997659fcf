"""The named exceptions of kvcalc. The core raises these and never prints or exits;
the CLI's one error funnel turns them into a one-line ``Error: ...`` on stderr."""

from __future__ import annotations

from collections.abc import Iterable

_CLIP_CHARS = 80


def clip(value: object) -> str:
    """``repr(value)``, cut to its first 80 characters (and the full length) when longer: an error
    line echoes what was given without pasting a 5,000-digit argument back to the terminal."""
    text = repr(value)
    if len(text) <= _CLIP_CHARS:
        return text
    return f"{text[:_CLIP_CHARS]}... ({len(text):,} characters)"


class KvcalcError(Exception):
    """Base class: every error a user can cause. Exit code 1 in the CLI."""

    exit_code = 1


class InvalidRequestError(KvcalcError):
    """A request value (a flag or an API argument) is out of range or of the wrong type. Exit
    code 2 (usage). Not a ``ValueError``: click turns a ValueError raised in a flag's parser into
    its own "Invalid value" message, and this error must reach the funnel as it is."""

    exit_code = 2

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={clip(value)} is not allowed: expected {allowed}")


class UnknownNameError(KvcalcError):
    """An unknown model, GPU, dtype or engine name, with a "did you mean"."""

    exit_code = 2

    def __init__(self, what: str, name: str, known: Iterable[str]) -> None:
        import difflib  # lazily: kept off the start-up path

        self.what = what
        self.name = name
        known_list = sorted(set(known))
        close = difflib.get_close_matches(name.lower(), known_list, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close else f"; known: {', '.join(known_list[:12])}" + (
            ", ..." if len(known_list) > 12 else ""
        )
        super().__init__(f"unknown {what} {clip(name)}{hint}{listing}")


class UnknownModelError(UnknownNameError):
    """A model name that is neither built in, an alias, an existing path nor a cached hub id.
    Exit code 2 like every unknown name (README, "One error line": usage)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__("model", name, known)


class InvalidConfigError(KvcalcError, ValueError):
    """A model file (kvcalc YAML or Hugging Face config.json), or a model built in Python, is
    malformed or inconsistent. Also a ``ValueError``: pydantic wraps one raised by a dataclass's
    ``__post_init__`` into its ``ValidationError`` (the loader unwraps it, see ``reason``)."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}")


class UnplacedConfigKeyError(InvalidConfigError):
    """A config key that shapes the cache and that kvcalc cannot place (an unknown ``layer_types``
    value, a latent without its rope dim, a pattern of the wrong length): refused, never guessed.
    Exit code 2; ``--assume-standard`` proceeds under a stated assumption instead."""

    exit_code = 2


class UnsupportedByEngineError(KvcalcError):
    """A layer kind the chosen engine (at the version kvcalc models) does not serve or store."""

    exit_code = 2


class DoesNotFitError(KvcalcError):
    """Something does not fit in the memory it must fit in (needed vs available, and what to change)."""


class DeviceError(KvcalcError):
    """The device asked for (``--device cuda``) is not there or cannot be used: the environment,
    not the command line, so exit code 1 (README: "a device problem")."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"--device={clip(device)}: {message}")


class MissingDependencyError(KvcalcError):
    """An optional dependency (torch, transformers, matplotlib) is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; pip install 'kvcalc[{extra}]'")
