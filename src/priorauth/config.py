"""Payer configuration: the deployment's settings that a case's ``context`` may override.

``policy_effective`` is the FDA approval date once known (until then the policy is not in effect),
``formulary`` says per line of business whether the product is on the formulary / PDL (default: on),
``label_change_within_6_months`` flags a label change the policy does not yet reflect, and ``clocks``
overrides the policy's review clocks in hours per line of business and urgency, and ``provider_directory``
gives the plan's NPI-to-taxonomy directory, used when a request does not state the prescriber's specialty,
and ``member_eligibility`` the plan's member-to-line-of-business table, which wins over what a FHIR request's
Coverage says.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from priorauth.intake.errors import IntakeError, problems_from_validation

__all__ = ["PayerConfig", "load_config"]


class PayerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_effective: date | None = None
    formulary: dict[str, bool] = Field(default_factory=dict)
    label_change_within_6_months: bool = False
    clocks: dict[str, dict[Literal["standard", "expedited"], int]] = Field(default_factory=dict)
    provider_directory: dict[str, str] = Field(default_factory=dict)   # NPI -> NUCC taxonomy
    member_eligibility: dict[str, str] = Field(default_factory=dict)   # member id -> line of business


def load_config(path: str | Path) -> PayerConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise IntakeError(str(path), [f"(file): cannot be read: {exc}"]) from None
    try:
        return PayerConfig.model_validate(raw)
    except ValidationError as err:
        raise IntakeError(str(path), problems_from_validation(err)) from None
