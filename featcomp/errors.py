"""One error type for everything a user can get wrong.

The CLI turns a FeatcompError into a single line on stderr and exit code 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class FeatcompError(Exception):
    """A problem with the user's input: the message says what is wrong and what to do."""


class CodecError(FeatcompError):
    """A bitstream that cannot be decoded (truncated, corrupted, or made for other parameters)."""
