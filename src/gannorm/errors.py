"""The exception a user mistake raises.

Input is checked where it enters (config keys, file paths, names, numbers); a problem found there is a
:class:`GannormError` whose message is one line naming the problem and the fix. The command line prints
such an error as ``gannorm: error: ...`` and exits with status 2; any other exception is a bug in
gannorm and keeps its traceback.
"""
from __future__ import annotations


class GannormError(Exception):
    """A user mistake (bad config, missing file, unknown name); ``str()`` is a one-line message."""


class ConfigError(GannormError, ValueError):
    """A configuration value is wrong: the message names the key and what it accepts."""


class RunFolderError(GannormError, ValueError):
    """A path is not a usable run folder, or one of its files is damaged."""


class OptionError(GannormError, ValueError):
    """An option of a registered entry (a method, a loss, a penalty) is out of range or of the wrong type.

    ``option`` is the option's name, so that the config layer can name its full key
    (``normalization.options.scale``); ``str()`` is the one-line message.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


class InputError(GannormError, ValueError):
    """An input the user gave (a file, a dataset for a metric, a model or a layer) is not what gannorm needs."""


class LayerTypeError(InputError, TypeError):
    """A function was given a layer of a type it does not take (a ``TypeError`` too, as it used to be)."""
