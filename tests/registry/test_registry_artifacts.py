import hashlib
import json
import os
import time
from datetime import datetime

import pytest

from tailor.errors import TailorError, UsageError
from tailor.registry import artifacts as artifacts_module
from tailor.registry.artifacts import MARKER, ArtifactStore

FILES = {"adapter_config.json": b'{"r": 8}', "weights/model.safetensors": b"\x00\x01binary"}


@pytest.fixture
def artifacts(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


def write_files(directory, files=FILES):
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)


def tree(root):
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def test_publish_seals_with_hashes_and_moves_into_place(artifacts):
    with artifacts.stage() as staged:
        assert staged.parent == artifacts.root / ".staging" and tree(staged) == []
        write_files(staged)
        published = artifacts.publish(staged, "acme/credit-risk/v1")
    assert published == artifacts.root / "acme" / "credit-risk" / "v1"
    assert tree(published) == [MARKER, "adapter_config.json", "weights", "weights/model.safetensors"]
    marker = json.loads((published / MARKER).read_text())
    assert marker["files"] == {name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()}
    assert datetime.fromisoformat(marker["created_at"]).utcoffset().total_seconds() == 0
    assert tree(artifacts.staging_dir) == []
    assert artifacts.path_for("acme/credit-risk/v1") == published
    artifacts.verify("acme/credit-risk/v1")


def test_interrupted_stage_leaves_nothing(artifacts):
    with pytest.raises(KeyboardInterrupt):
        with artifacts.stage() as staged:
            write_files(staged)
            raise KeyboardInterrupt
    assert tree(artifacts.root) == [".staging"]


def test_failure_while_sealing_writes_no_marker_and_no_target(artifacts, monkeypatch):
    def unreadable(path):
        raise OSError(f"cannot read {path.name}")

    monkeypatch.setattr(artifacts_module, "_sha256", unreadable)
    with artifacts.stage() as staged:
        write_files(staged)
        with pytest.raises(OSError):
            artifacts.publish(staged, "acme/m/v1")
        assert not (staged / MARKER).exists()
    assert not (artifacts.root / "acme").exists()


@pytest.mark.parametrize("relpath", ["acme/m/v1", "never/written"])
def test_path_for_refuses_a_directory_without_marker(artifacts, relpath):
    (artifacts.root / "acme" / "m" / "v1").mkdir(parents=True)
    (artifacts.root / "acme" / "m" / "v1" / "weights.bin").write_bytes(b"half")
    with pytest.raises(TailorError) as caught:
        artifacts.path_for(relpath)
    assert str(caught.value) == (
        f"artifact {relpath} is incomplete or missing: no {MARKER} (was its write interrupted?)")


def test_publish_refuses_to_overwrite(artifacts):
    for attempt in range(2):
        with artifacts.stage() as staged:
            write_files(staged, {"a.txt": str(attempt).encode()})
            if attempt == 0:
                artifacts.publish(staged, "acme/m/v1")
            else:
                with pytest.raises(TailorError, match="^artifact acme/m/v1 already exists$"):
                    artifacts.publish(staged, "acme/m/v1")
    assert (artifacts.path_for("acme/m/v1") / "a.txt").read_text() == "0"


@pytest.mark.parametrize("relpath", ["", "/etc/x", "../outside", "acme/../../x", ".staging/x"])
def test_paths_must_stay_inside_the_root(artifacts, relpath):
    with pytest.raises(UsageError) as caught:
        artifacts.path_for(relpath)
    assert str(caught.value) == (
        f"invalid artifact path {relpath!r}: expected a relative path inside the artifacts root")


def published(artifacts, relpath="acme/m/v1", files=FILES):
    with artifacts.stage() as staged:
        write_files(staged, files)
        return artifacts.publish(staged, relpath)


@pytest.mark.parametrize(
    "tamper, problem",
    [
        (lambda d: (d / "adapter_config.json").write_bytes(b'{"r": 16}'), "modified: adapter_config.json"),
        (lambda d: (d / "weights" / "model.safetensors").unlink(), "missing: weights/model.safetensors"),
        (lambda d: (d / "extra.bin").write_bytes(b"x"), "unexpected: extra.bin"),
    ],
)
def test_verify_detects_tampering(artifacts, tamper, problem):
    tamper(published(artifacts))
    with pytest.raises(TailorError) as caught:
        artifacts.verify("acme/m/v1")
    assert str(caught.value) == f"artifact acme/m/v1 failed verification ({problem})"


def test_remove_deletes_the_directory_and_tolerates_absence(artifacts):
    published(artifacts, "acme/m/v1")
    kept = published(artifacts, "acme/m/v2")
    artifacts.remove("acme/m/v1")
    artifacts.remove("acme/m/v1")
    assert tree(artifacts.root / "acme") == ["m", "m/v2", *(f"m/v2/{p}" for p in tree(kept))]
    assert tree(artifacts.staging_dir) == []


def test_sweep_removes_only_abandoned_staging_dirs(artifacts):
    with artifacts.stage() as abandoned:
        write_files(abandoned)
    with artifacts.stage() as fresh:
        write_files(fresh)
    old = time.time() - 7200
    for path in [abandoned, *abandoned.rglob("*")]:
        os.utime(path, (old, old))
    assert artifacts.sweep_staging(older_than_s=3600) == 1
    assert [p.name for p in artifacts.staging_dir.iterdir()] == [fresh.name]
    assert ArtifactStore(artifacts.root / "never-used").sweep_staging() == 0
