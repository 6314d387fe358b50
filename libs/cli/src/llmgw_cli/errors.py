"""Expected failures: printed as one line on stderr with an exit code, never as a traceback."""

from __future__ import annotations

#: exit codes
EXIT_API_ERROR = 1
EXIT_USAGE = 2  # also: service unreachable, configuration problems (click uses 2 for usage errors)


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_API_ERROR, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint


class ServiceUnreachable(CliError):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, exit_code=EXIT_USAGE, hint=hint)


class ApiError(CliError):
    """The service answered with an error status (``{"error": {"type", "message"}}``)."""

    def __init__(self, status: int, error_type: str | None, message: str, hint: str | None = None):
        label = f"{status} {error_type}" if error_type else str(status)
        super().__init__(f"{label}: {message}", exit_code=EXIT_API_ERROR, hint=hint)
        self.status = status
        self.error_type = error_type
        self.detail = message
