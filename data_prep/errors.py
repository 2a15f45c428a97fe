"""The error a user can fix (a wrong option, an empty or unreadable archive), printed by the CLI as one line."""


class UsageError(Exception):
    """A problem with the command line or the source archive; the message names the option or file and the fix."""
