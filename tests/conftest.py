"""Shared test fixtures: where ../shared (parity vectors, photo sets) lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECON3D_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED} (set RECON3D_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def vggt_parity(shared_dir: Path) -> Path:
    return shared_dir / "parity" / "vggt"


@pytest.fixture(scope="session")
def dust3r_parity(shared_dir: Path) -> Path:
    return shared_dir / "parity" / "dust3r"
