"""Intake adapters: each turns one input format into a :class:`priorauth.case.Case`."""

from priorauth.intake.errors import IntakeError

__all__ = ["IntakeError"]
