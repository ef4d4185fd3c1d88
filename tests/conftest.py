import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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


# ---- store backends: SQLite (a temporary file) and a real PostgreSQL ------------------------------------------
PG_URL = os.environ.get("PRIORAUTH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_admin():
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as c:
            c.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect
        engine.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} cannot be reached (CI is set): {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} cannot be reached: {exc}")
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'priorauth.sqlite'}"
        return
    admin = _pg_admin()
    name = f"priorauth_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


