"""Exceptions that carry a one-line message meant for the user.

Front ends print ``str(err)`` of these without a traceback and exit with code 1;
any other exception is an internal error (exit code 2).
"""


class Recon3DError(Exception):
    """Base class of errors caused by the user's input or environment."""


class InputError(Recon3DError):
    """Unreadable, unsupported or missing input images or videos."""


class WeightsError(Recon3DError):
    """Model weights that are missing, unsafe or do not fit the network."""
