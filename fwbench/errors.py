"""Errors that the CLI turns into one-line messages and exit codes."""

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT; a SIGTERM ends with 128 + 15


class FwbenchError(Exception):
    """A problem with what the user asked for: reported in one line, exit code 2."""

    exit_code = EXIT_USAGE


class DivergedError(Exception):
    """Training produced a non-finite loss; the run is recorded as diverged."""

    exit_code = EXIT_DIVERGED

    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}; run marked diverged")
        self.step = step
        self.loss = loss


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM from `kill`, `timeout` or a batch scheduler), handled
    like Ctrl-C: runs record themselves as interrupted and can be resumed."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum
        self.exit_code = 128 + signum
