"""Packaged weights: parts are joined in order, checked against a pinned sha256, and refused on mismatch."""

from __future__ import annotations

import hashlib

import pytest

from rag.errors import LLMError
from rag.models import PACKAGED_MODELS, PackagedModel, ensure_joined, locate_parts, resolve_gguf


def _fake_parts(root, prefix: str, blobs: list[bytes]) -> PackagedModel:
    for i, blob in enumerate(blobs, start=1):
        package = root / f"{prefix}{i}"
        (package / "data").mkdir(parents=True)
        # The packages' own code must never run: an __init__ that raises proves it is not imported.
        (package / "__init__.py").write_text("raise RuntimeError('imported untrusted package')\n")
        (package / "data" / f"part{i:02d}.bin").write_bytes(blob)
    joined = b"".join(blobs)
    return PackagedModel(
        name=f"{prefix}model",
        description="test",
        parts=tuple((f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, len(blobs) + 1)),
        sha256=hashlib.sha256(joined).hexdigest(),
        size=len(joined),
    )


def test_parts_join_in_order_and_verify(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = _fake_parts(tmp_path / "site", "fakejoin_ok_part", [b"GGUF-one-", b"two-", b"three"])
    path = ensure_joined(model, tmp_path / "models")
    assert path.read_bytes() == b"GGUF-one-two-three"
    assert ensure_joined(model, tmp_path / "models") == path  # second call trusts the stamp


def test_tampered_part_is_refused(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = _fake_parts(tmp_path / "site", "fakejoin_bad_part", [b"GGUF-one-", b"two"])
    (tmp_path / "site" / "fakejoin_bad_part2" / "data" / "part02.bin").write_bytes(b"evil")
    with pytest.raises(LLMError, match="do not match the pinned checksum"):
        ensure_joined(model, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []  # nothing half-written is left behind


def test_edited_joined_file_is_checked_again(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = _fake_parts(tmp_path / "site", "fakejoin_edit_part", [b"GGUF-a", b"b"])
    path = ensure_joined(model, tmp_path / "models")
    path.write_bytes(b"GGUF-corrupted")
    assert ensure_joined(model, tmp_path / "models").read_bytes() == b"GGUF-ab"  # rejoined from the parts


def test_missing_parts_are_named_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = _fake_parts(tmp_path / "site", "fakejoin_gap_part", [b"a", b"b"])
    model = PackagedModel(model.name, "", model.parts + (("fakejoin_gap_part3", "data/part03.bin"),), "0", 0)
    with pytest.raises(LLMError, match=r"missing package fakejoin-gap-part3; install with pip install"):
        locate_parts(model)


def test_unknown_model_and_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(LLMError, match="model file not found"):
        resolve_gguf(str(tmp_path / "nope.gguf"), tmp_path)
    with pytest.raises(LLMError, match="unknown model 'gpt-9'"):
        resolve_gguf("gpt-9", tmp_path)


def test_pinned_models_have_full_checksums():
    for model in PACKAGED_MODELS.values():
        assert len(model.sha256) == 64 and model.size > 100_000_000
