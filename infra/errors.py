"""The errors a caller can tell apart, one place for all of them.

A refused command or a case that cannot run fails with a Temporal `ApplicationError`
whose `type` is one of the names below (the contract other systems read, whatever their
SDK); the Python client raises the matching exception class.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

# ApplicationError.type of ...
INVALID_CASE_INPUT = "InvalidCaseInput"  # a start input that is not an OpenCase (case fails)
INVALID_AGENDA_INPUT = "InvalidAgendaInput"  # a talk-day agenda's start input
COMMAND_REFUSED = "CommandRefused"  # a command the case refuses (nothing recorded)
RECORDING_FAILED = "RecordingFailed"  # the events of a command could not be recorded


def failure(message: str, type: str) -> ApplicationError:
    """The non-retryable ApplicationError of one of the types above."""
    return ApplicationError(message, type=type, non_retryable=True)


class CaseError(Exception):
    """A case refused or could not apply a command; the message names the field or rule
    and the reason, never a resident's personal data."""

    type = ""


class CommandRefused(CaseError):
    """The case refused the command: bad input, wrong step, wrong actor. Nothing was
    recorded."""

    type = COMMAND_REFUSED


class RecordingFailed(CaseError):
    """The command was accepted but its events could not be recorded (the stored chain
    disagrees): the command is not applied; an operator should look at the case."""

    type = RECORDING_FAILED


_BY_TYPE: dict[str, type[CaseError]] = {
    cls.type: cls for cls in (CommandRefused, RecordingFailed)
}


def error_of(cause: BaseException | None) -> CaseError:
    """The client-side exception for the failure of an update."""
    if isinstance(cause, ApplicationError):
        return _BY_TYPE.get(cause.type or "", CaseError)(cause.message)
    return CaseError(str(cause))
