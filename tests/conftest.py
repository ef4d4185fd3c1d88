import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = Path(os.environ.get("PRIORAUTH_SCENARIOS", ROOT.parent / "shared" / "scenarios"))


@pytest.fixture(scope="session")
def policy():
    from priorauth.policies import default_policy

    return default_policy()


@pytest.fixture(scope="session")
def term():
    from priorauth.terminology import load_terminology

    return load_terminology()
