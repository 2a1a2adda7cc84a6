"""`status.runs[].trainer` (and a trial's `trainer`): the trainer's phases in one attempt's
pod, as the operator saw them in its log while it ran and read them from its report once it
ended. The phase names are the trainer↔operator contract's (`kiln.contract.progress`); the
schema keeps them plain bounded strings, so that a trainer image newer than the operator
cannot make a status write fail."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kiln.api.common import KilnModel

MAX_PHASE_NAME = 32
# A training has four phases, a trial three; a few to spare for what a later trainer adds.
MAX_TRAINER_PHASES = 8


class TrainerPhase(KilnModel):
    """One phase the trainer entered."""

    phase: str = Field(max_length=MAX_PHASE_NAME, description="load, fit, evaluate or upload.")
    start_time: datetime = Field(description="When the trainer entered it.")
    seconds: float | None = Field(
        default=None, ge=0, description="How long it took (unset while it runs)."
    )


class TrainerProgress(KilnModel):
    """Where the trainer of the current attempt is."""

    pod: str = Field(max_length=253, description="The attempt's pod these phases are from.")
    phase: str = Field(
        max_length=MAX_PHASE_NAME,
        description="The latest phase the trainer entered: load, fit, evaluate or upload (for "
        "a pod that ended, the one it ended in).",
    )
    phase_start_time: datetime = Field(description="When it entered that phase.")
    phases: list[TrainerPhase] = Field(
        default_factory=list,
        max_length=MAX_TRAINER_PHASES,
        description="Every phase it entered, in order; from the trainer's report once the pod "
        "ended (exact), from its log before.",
    )
    finished: bool = Field(
        default=False,
        description="The pod ended and these phases are its report's (or its last log lines').",
    )
