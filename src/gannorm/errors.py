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
