"""Errors slimkit raises for bad input: each names the problem and the fix."""

import difflib


class SlimkitError(Exception):
    """Base class of slimkit's user-facing errors (bad input the user can fix); `hint` says how."""

    exit_code = 2

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(SlimkitError, ValueError):
    """A configuration value or argument is wrong; `path` locates it (e.g. `stages[1].ratio`)."""

    def __init__(self, path, message, hint=None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message, hint)


class DataError(SlimkitError, FileNotFoundError):
    """A dataset file is missing or unreadable."""


class ModelError(SlimkitError, ValueError):
    """A model cannot be built, loaded, traced or changed as asked; it is left as it was."""


class TrainingError(SlimkitError):
    """Training diverged: the loss or the weights became NaN or inf; the stage stops, the user's model is unchanged."""


class ResumeError(SlimkitError):
    """A run folder does not match the pipeline asked to resume in it."""


class OutputError(SlimkitError):
    """The output folder cannot be used as asked (a file, unwritable, or holding what this run did not write)."""


class ParallelError(SlimkitError):
    """The processes of a data-parallel run disagree, or one of them failed (exit code 1 unless relayed)."""

    exit_code = 1

    def __init__(self, message, hint=None, exit_code=1):
        super().__init__(message, hint)
        self.exit_code = exit_code


class ConfigErrors(ConfigError):
    """Several problems found in one pass (a config with three typos is fixed in one go).

    Its message is the count and one line per problem (`  - path: message (hint: ...)`).
    """

    def __init__(self, errors):
        self.errors = flatten(errors)
        lines = [f"{len(self.errors)} problems:"]
        for err in self.errors:
            lines.append(f"  - {err.message}" + (f" (hint: {err.hint})" if err.hint else ""))
        super().__init__("", "\n".join(lines))
        self.exit_code = max(e.exit_code for e in self.errors)


class CorruptFileError(SlimkitError):
    """A file slimkit wrote (a checkpoint, a stage or run record) is damaged or was changed since."""


def flatten(errors):
    """The single errors of `errors`, a ConfigErrors standing for each of its own."""
    return [e for err in errors for e in (err.errors if isinstance(err, ConfigErrors) else [err])]


def raise_all(errors):
    """Raise the one error, or all of them together."""
    errors = flatten(errors)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def suggest(key, names):
    """The hint for an unknown `key`: the closest of `names` (if one is close), then every valid name."""
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
    valid = f"valid: {', '.join(names)}"
    return f"did you mean '{close[0]}'? {valid}" if close else valid
