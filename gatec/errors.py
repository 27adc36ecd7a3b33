"""The one exception type for a user's mistake or an unsupported model.

The CLI prints it as a single line and exits with status 2; anything else is a bug in gatec
and keeps its traceback.
"""


class GatecError(Exception):
    pass
