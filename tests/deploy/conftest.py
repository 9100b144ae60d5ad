"""Shared fixtures for the deployment file checks: paths and parsed files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CHECKOUT_DIR = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = CHECKOUT_DIR / "deploy" / "kubernetes"


@pytest.fixture(scope="session")
def checkout_dir() -> Path:
    return CHECKOUT_DIR


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((CHECKOUT_DIR / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def kubernetes_documents() -> list[tuple[str, dict]]:
    """Every manifest of the kustomize base as (file name, document) pairs."""
    documents = []
    for path in sorted(KUBERNETES_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents
