"""The one exception the client raises for the gateway's and the CLI's
refusals, so a notebook shows a sentence, not a urllib traceback."""


class FaasError(Exception):
    """A refusal or failure from the gateway, a function or the `faas` CLI.

    ``status`` is the HTTP status (``None`` when there was no answer: the
    gateway unreachable, a timeout, the CLI failing), ``message`` the one
    line saying what went wrong, ``details`` more lines when there are
    some (a failed build's last log lines).

    >>> try:
    ...     gw.remove("nope")
    ... except FaasError as e:
    ...     print(e.status, e.message)
    404 remove nope: function "nope" not found
    """

    def __init__(self, message, status=None, details=""):
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details

    def __str__(self):
        head = f"{self.status}: {self.message}" if self.status else self.message
        return f"{head}\n{self.details}" if self.details else head
