"""Errors a user can act on. The CLI turns them into a message and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (a file, a column, a rule file): the message says what to fix.

    ``str(err)`` is the whole user-facing message; it never contains personal data.
    """

    exit_code = 2


class RuleFileError(InputError):
    """A rule, product or list file under ``actuarial/`` that cannot be used."""


class JobFailed(Exception):
    """The job could not finish (not the user's input): the message says what was done
    and what to do (usually: run it again). The CLI prints it and exits with code 1."""

    exit_code = 1


class Conflict(InputError):
    """The input contradicts what is already recorded (a settlement id decided before
    with other amounts, a reversed settlement sent again, an idempotency key reused for
    another request): the CLI exits 2, the service answers 409."""


class Unprocessable(InputError):
    """Well-formed input that cannot be applied to what is recorded (a reversal of a
    settlement the ledger never decided, of another person's, or whose amounts are not
    the original's negated): the CLI exits 2, the service answers 422."""
