"""One exception type for problems the user can fix.

Entry points catch :class:`UserError`, print its message as one paragraph and exit with a
non-zero status instead of showing a traceback from deep inside a library.
"""


class UserError(Exception):
    """Bad input or missing resources, explained in words the user can act on."""
