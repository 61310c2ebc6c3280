"""How a release ended, as a value: promoted, rolled back, or refused before it changed anything.

The runbook (``flows.release.release``) returns one ``Outcome`` and the finaliser reports it once.
Ending a release by raising from inside the ``try`` that also catches everything let a failure in
the reporting after a rollback reach the catch-all and roll back (and count, and retry) a second
time; a value cannot be caught twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from canaryflow.judge import Decision, Reason


class Ending(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"  # stopped before any change (preflight): nothing to undo


def is_interruption(exc: BaseException) -> bool:
    """The orchestrator itself is going away (SIGTERM as Prefect's ``TerminationSignal``, Ctrl-C,
    ``SystemExit``, a cancellation): every such exception is a ``BaseException`` that is not an
    ``Exception``, which is also what ``except Exception`` lets through."""
    return not isinstance(exc, Exception)


@dataclass(frozen=True)
class Outcome:
    """``evidence`` of a promotion is the judge's passing decision of every step; of a rollback,
    the decision that rolled back (empty when no judge was involved: smoke test, platform error).
    ``cause`` is the exception that ended the release, if one did; an interruption among them
    still ends the run Crashed/Cancelled after the rollback and the report. ``reason`` is None
    only for a refusal about the version or the spec itself (it already runs, it is unknown)."""

    ending: Ending
    reason: Reason | None
    explanation: str = ""
    evidence: tuple[Decision, ...] = field(default_factory=tuple)
    cause: BaseException | None = field(default=None, compare=False)
    rollback_error: str | None = None  # the rollback itself failed (the platform says what then)

    @classmethod
    def promoted(cls, evidence: tuple[Decision, ...]) -> Outcome:
        last = evidence[-1] if evidence else None
        if last is not None and last.reason is Reason.MANUAL:  # a person's promote: who and why
            return cls(Ending.PROMOTED, Reason.MANUAL, last.explanation, evidence)
        return cls(Ending.PROMOTED, Reason.ANALYSIS_PASSED, "every step passed its analysis", evidence)

    @classmethod
    def rolled_back(cls, reason: Reason, explanation: str, *, evidence: tuple[Decision, ...] = (),
                    cause: BaseException | None = None, rollback_error: str | None = None) -> Outcome:
        return cls(Ending.ROLLED_BACK, reason, explanation, evidence, cause, rollback_error)

    @classmethod
    def refused(cls, reason: Reason | None, explanation: str, *, cause: BaseException | None = None) -> Outcome:
        return cls(Ending.REFUSED, reason, explanation, (), cause)

    @property
    def interrupted(self) -> bool:
        return self.cause is not None and is_interruption(self.cause)

    @property
    def retry_reason(self) -> str | None:
        """The reason handed to the retry decision, or None when no retry may even be considered:
        a promotion, a refusal about the version itself, or a dying orchestrator (it schedules
        nothing). Whether the reason is retryable is ``canaryflow.retries.plan_retry``'s call."""
        if self.ending is Ending.PROMOTED or self.interrupted or self.reason is None:
            return None
        return self.reason.value

    def describe(self) -> str:
        """The final state's message: the ending and the reason, first."""
        if self.ending is Ending.PROMOTED:
            return "promoted"
        why = self.reason.value if self.reason else "not releasable"
        head = f"{self.ending.value.replace('_', ' ')} ({why}): {self.explanation}"
        return head + (f"; the rollback itself failed: {self.rollback_error}" if self.rollback_error else "")
