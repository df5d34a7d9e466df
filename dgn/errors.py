"""Errors that end a run with one clear line and exit code 2."""


class DgnError(Exception):
    """A problem the user can fix (bad config, missing file, unknown target).

    The CLI prints ``dgn: <message>`` on one line and exits with code 2.
    """

    exit_code = 2


class ConfigError(DgnError):
    """An invalid config file, key, type, value or ``--set`` override."""
