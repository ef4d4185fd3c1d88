"""Parameter types a check declares; validated and converted to canonical units when a policy loads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from priorauth.clinical.labs import FlcRules, IncreaseRule, ProgressionRules
from priorauth.clinical.therapy import HistoryRules
from priorauth.clinical.units import UnitError, factor, format_quantity

__all__ = ["Param", "Qty", "Count", "Range", "IncreaseParam", "FlcRatioParams", "MeasurableParams",
           "ProgressionParams", "LinesParams"]


class Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Qty(Param):
    """A number with a unit and the clause it comes from."""

    value: float
    unit: str | None = None
    reference: str | None = None

    @model_validator(mode="after")
    def _unit(self) -> "Qty":
        if self.unit is not None:
            try:
                factor(self.unit, self.unit)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        return self

    def to(self, target: str) -> float:
        if self.unit is None:
            return self.value
        return self.value * factor(self.unit, target)

    def __str__(self) -> str:
        return format_quantity(f"{self.value:g}", self.unit)


class Count(Param):
    value: int = Field(ge=0)
    reference: str | None = None

    def __str__(self) -> str:
        return str(self.value)


class Range(Param):
    value: tuple[float, float]
    reference: str | None = None

    @model_validator(mode="after")
    def _order(self) -> "Range":
        if self.value[0] >= self.value[1]:
            raise ValueError("the low end must be below the high end")
        return self


class HighNadirParam(Param):
    """From a nadir of at least ``nadir_at_least``, an absolute rise of ``absolute_increase`` is enough alone."""

    nadir_at_least: Qty
    absolute_increase: Qty
    reference: str | None = None


class IncreaseParam(Param):
    relative_increase: float | None = Field(default=None, ge=0)
    absolute_increase: Qty | None = None
    absolute_increase_over: Qty | None = None
    minimum: Qty | None = None
    high_nadir: HighNadirParam | None = None
    reference: str | None = None

    def rule(self, unit: str) -> IncreaseRule:
        if self.absolute_increase is not None and self.absolute_increase_over is not None:
            raise ValueError("give absolute_increase or absolute_increase_over, not both")
        absolute = self.absolute_increase or self.absolute_increase_over
        return IncreaseRule(
            relative=self.relative_increase,
            absolute=absolute.to(unit) if absolute is not None else None,
            strictly=self.absolute_increase_over is not None,
            minimum=self.minimum.to(unit) if self.minimum is not None else None,
            high_nadir=self.high_nadir.nadir_at_least.to(unit) if self.high_nadir is not None else None,
            high_nadir_absolute=self.high_nadir.absolute_increase.to(unit) if self.high_nadir is not None else None,
        )


class FlcRatioParams(Param):
    normal_range: Range
    renal_range: Range
    renal_egfr_below: Qty
    egfr_within_days: Count

    def rules(self, measurable_involved: Qty) -> FlcRules:
        return FlcRules(
            normal_range=self.normal_range.value,
            renal_range=self.renal_range.value,
            renal_egfr_below=self.renal_egfr_below.to("mL/min/{1.73_m2}"),
            egfr_within_days=self.egfr_within_days.value,
            measurable_involved=measurable_involved.to("mg/dL"),
        )


class MeasurableParams(Param):
    window_days: Count
    serum_m_protein: Qty
    urine_m_protein: Qty
    involved_flc: Qty



class ProgressionParams(Param):
    days_after_last_dose: Count
    baseline_days: Count
    no_confirmation: tuple[str, ...] = ()
    serum_m_protein: IncreaseParam
    urine_m_protein: IncreaseParam
    flc_difference: IncreaseParam
    bone_marrow_plasma_cells: IncreaseParam
    circulating_plasma_cells: IncreaseParam
    assessment_responses: tuple[str, ...]
    imaging_findings: tuple[str, ...]
    measurable: MeasurableParams
    flc_ratio: FlcRatioParams

    def rules(self) -> ProgressionRules:
        return ProgressionRules(
            serum_m_protein=self.serum_m_protein.rule("g/dL"),
            urine_m_protein=self.urine_m_protein.rule("mg/(24.h)"),
            flc_difference=self.flc_difference.rule("mg/dL"),
            bone_marrow_plasma_cells=self.bone_marrow_plasma_cells.rule("%"),
            circulating_plasma_cells=self.circulating_plasma_cells.rule("{cells}/uL"),
            measurable_serum=self.measurable.serum_m_protein.to("g/dL"),
            measurable_urine=self.measurable.urine_m_protein.to("mg/(24.h)"),
            flc=self.flc_ratio.rules(self.measurable.involved_flc),
            baseline_days=self.baseline_days.value,
            unconfirmed=frozenset(self.no_confirmation),
        )


class LinesParams(Param):
    """How a treatment history becomes exposures, regimens and lines (docs/criteria.md, "Treatment history")."""

    minimum: Count
    join_days: Count
    administration_gap_days: Count
    resume_gap_days: Count
    hold_gap_days: Count
    hold_reasons: tuple[str, ...]
    conditioning_days: Count
    post_transplant_days: Count
    tandem_days: Count
    post_transplant_single_agent_classes: tuple[str, ...]

    def rules(self) -> HistoryRules:
        return HistoryRules(
            join_days=self.join_days.value,
            administration_gap_days=self.administration_gap_days.value,
            resume_gap_days=self.resume_gap_days.value,
            hold_gap_days=self.hold_gap_days.value,
            conditioning_days=self.conditioning_days.value,
            post_transplant_days=self.post_transplant_days.value,
            tandem_days=self.tandem_days.value,
            single_agent_classes=frozenset(self.post_transplant_single_agent_classes),
            hold_reasons=frozenset(self.hold_reasons),
        )
