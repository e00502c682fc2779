import re

import pytest

from tailor.errors import TailorError, UsageError
from tailor.registry.artifacts import MARKER, ArtifactStore
from tailor.registry.service import Registry, open_registry
from tailor.registry.sql import SqlRegistryStore
from tailor.settings import Settings

FIELDS = dict(task="classify", base_model="minilm-l6", method="head", params={"lr": 0.01},
              metrics={"accuracy": 0.9}, lineage={"job": "ftjob-1"})


class FailingStore(SqlRegistryStore):
    def create_version(self, *args, **kwargs):
        raise RuntimeError("database went away")


@pytest.fixture
def registry(tmp_path):
    opened = open_registry(Settings(home=tmp_path / "home"))
    yield opened
    opened.store.close()


def publish(registry, name="credit-risk", tenant="acme", content=b"weights"):
    with registry.artifacts.stage() as staged:
        (staged / "model.safetensors").write_bytes(content)
        return registry.publish_version(tenant, name, staged, **FIELDS)


def files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_open_registry_uses_the_settings_paths(registry, tmp_path):
    publish(registry)
    assert (tmp_path / "home" / "tailor.db").is_file()
    assert registry.artifacts.root == tmp_path / "home" / "artifacts"


def test_publish_version_registers_a_complete_artifact(registry):
    version = publish(registry)
    assert (version.ref, version.method, version.params) == ("credit-risk:1", "head", {"lr": 0.01})
    assert re.fullmatch(r"acme/credit-risk/[0-9a-f]{32}", version.artifact_path)
    directory = registry.artifact_dir(version)
    assert directory == registry.artifacts.root / version.artifact_path
    assert files_under(directory) == [MARKER, "model.safetensors"]
    assert registry.store.resolve("acme", "credit-risk") == version
    assert files_under(registry.artifacts.staging_dir) == []


def test_ft_ids_get_a_colon_free_directory(registry):
    version = publish(registry, "ft:minilm-l6:acme:suffix:ftjob-abc123")
    assert version.artifact_path.startswith("acme/ft_minilm-l6_acme_suffix_ftjob-abc123/")
    assert registry.store.resolve("acme", "ft:minilm-l6:acme:suffix:ftjob-abc123:1") == version


def test_failed_insert_leaves_no_artifact_and_no_row(tmp_path):
    store = FailingStore(f"sqlite:///{tmp_path / 'tailor.db'}")
    registry = Registry(store, ArtifactStore(tmp_path / "artifacts"))
    with pytest.raises(RuntimeError, match="database went away"):
        publish(registry)
    assert files_under(registry.artifacts.root) == []
    assert list((registry.artifacts.root / "acme" / "credit-risk").iterdir()) == []
    assert store.list_models() == []
    store.close()


@pytest.mark.parametrize("tenant, name, message", [
    ("acme", "Credit Risk", "invalid model name 'Credit Risk'"),
    ("../etc", "credit-risk", "invalid tenant '../etc'"),
])
def test_bad_names_are_refused_before_anything_is_written(registry, tenant, name, message):
    with registry.artifacts.stage() as staged:
        (staged / "model.safetensors").write_bytes(b"w")
        with pytest.raises(UsageError, match=f"^{re.escape(message)}"):
            registry.publish_version(tenant, name, staged, **FIELDS)
        assert files_under(staged) == ["model.safetensors"]
    assert registry.store.list_models() == []


def test_artifact_dir_refuses_an_incomplete_artifact(registry):
    version = publish(registry)
    (registry.artifact_dir(version) / MARKER).unlink()
    with pytest.raises(TailorError, match=f"^artifact {version.artifact_path} is incomplete"):
        registry.artifact_dir(version)


def test_delete_version_removes_row_then_files(registry):
    first, second = publish(registry, content=b"1"), publish(registry, content=b"2")
    assert registry.delete_version("acme", "credit-risk", 1) == first
    assert [v.version for v in registry.store.list_versions("acme", "credit-risk")] == [2]
    assert not (registry.artifacts.root / first.artifact_path).exists()
    assert (registry.artifact_dir(second) / "model.safetensors").read_bytes() == b"2"


def test_delete_model_removes_every_version_and_its_files(registry):
    versions = [publish(registry), publish(registry)]
    kept = publish(registry, "other")
    assert registry.delete_model("acme", "credit-risk") == versions
    assert [m.name for m in registry.store.list_models("acme")] == ["other"]
    assert files_under(registry.artifacts.root) == [f"{kept.artifact_path}/{MARKER}",
                                                    f"{kept.artifact_path}/model.safetensors"]


def add_version(store, name="spam", task="classify", lineage=None, tenant="acme"):
    return store.create_version(tenant, name, task=task, base_model="minilm-l6", method="head",
                                artifact_path=f"{tenant}/{name}/x", params={}, metrics={},
                                lineage={"label_counts": {"ham": 40, "spam": 9}} if lineage is None else lineage)


def test_same_labels_pass_and_other_labels_are_refused_naming_both(registry):
    from tailor.registry.service import check_same_labels

    store = registry.store
    check_same_labels(store, "acme", "spam", ["ham", "spam"])  # no model yet
    add_version(store)
    check_same_labels(store, "acme", "spam", ["spam", "ham", "spam"])  # the same set, any order
    with pytest.raises(UsageError) as refused:
        check_same_labels(store, "acme", "spam", ["balance", "bill_due"])
    assert str(refused.value) == (
        "model 'spam' (tenant acme) has labels [ham, spam]; this data has [balance, bill_due]: pass --new-labels "
        "to register it as a new version of 'spam' anyway, or --name to start a new model")
    with pytest.raises(UsageError, match=r"has labels \[ham, spam\]; this data has \[ham, spam, unsure\]"):
        check_same_labels(store, "acme", "spam", ["ham", "spam", "unsure"])
    check_same_labels(store, "globex", "spam", ["balance"])  # another tenant's model is another model


def test_the_latest_version_decides_and_long_label_lists_are_cut(registry):
    from tailor.registry.service import check_same_labels

    store = registry.store
    add_version(store)
    add_version(store, lineage={"label_counts": {f"intent_{i:03d}": 5 for i in range(150)}})
    check_same_labels(store, "acme", "spam", [f"intent_{i:03d}" for i in range(150)])
    with pytest.raises(UsageError) as refused:
        check_same_labels(store, "acme", "spam", ["ham", "spam"])
    assert str(refused.value).startswith(
        "model 'spam' (tenant acme) has labels [intent_000, intent_001, intent_002, intent_003, intent_004, "
        "intent_005, intent_006, intent_007, intent_008, intent_009, ... (150 labels)]; this data has [ham, spam]")


@pytest.mark.parametrize("task, lineage", [("chat", {}), ("classify", {}), ("classify", {"job": "ftjob-1"})])
def test_versions_without_recorded_labels_are_not_checked(registry, task, lineage):
    from tailor.registry.service import check_same_labels, version_labels

    version = add_version(registry.store, task=task, lineage=lineage)
    assert version_labels(version) is None
    check_same_labels(registry.store, "acme", "spam", ["anything", "else"])
