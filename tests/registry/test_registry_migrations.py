"""The schema steps, applied from a blank database on every backend (see conftest.py)."""

import pytest
from sqlalchemy import inspect

from tailor.registry import migrations
from tailor.registry.migrations import applied_migrations, migrate
from tailor.db import create_db_engine
from tailor.registry.sql import SqlRegistryStore

EXPECTED_COLUMNS = {
    "tailor_migrations": ["name", "applied_at"],
    "models": ["id", "tenant", "name", "description", "last_version", "created_at"],
    "model_versions": ["id", "model_id", "version", "task", "base_model", "method", "artifact_path",
                       "params", "metrics", "lineage", "created_at"],
    "aliases": ["model_id", "alias", "version", "candidate", "candidate_mode", "candidate_share"],
    "tenants": ["name", "created_at", "retention_days", "retention_rows"],
    "api_keys": ["id", "tenant", "name", "secret_hash", "prefix", "scopes", "created_at", "last_used_at",
                 "revoked_at", "expires_at"],
    "files": ["id", "tenant", "filename", "purpose", "bytes", "sha256", "kind", "summary", "relpath", "created_at"],
    "jobs": ["id", "tenant", "model", "task", "training_file", "validation_file", "suffix", "seed", "request",
             "status", "fine_tuned_model", "error", "result", "attempts", "worker_id", "heartbeat_at", "created_at",
             "started_at", "finished_at"],
    "job_events": ["id", "job_id", "created_at", "level", "type", "message", "data"],
    "job_checkpoints": ["id", "job_id", "step", "metrics", "created_at"],
    "alias_events": ["id", "model_id", "alias", "version", "action", "created_at", "candidate", "candidate_mode",
                     "candidate_share", "actor", "reason"],
    "registry_changes": ["id", "changes"],
    "predictions": ["id", "tenant", "kind", "request_id", "model", "model_name", "version", "created_at", "latency_ms",
                    "prompt_tokens", "completion_tokens", "label", "score", "scores", "output", "input", "stored",
                    "metadata", "details", "features"],
    "feedback": ["id", "tenant", "record_id", "label", "rating", "correction", "created_at"],
    "monitoring_configs": ["tenant", "model_name", "store_inputs", "window_hours", "rules", "webhook_url",
                           "updated_at"],
    "alerts": ["id", "tenant", "model_name", "version", "rule", "value", "state", "fired_at", "resolved_at",
               "delivery", "attempts", "last_error"],
    "console_sessions": ["id", "key_id", "csrf", "created_at", "expires_at"],
    "release_gates": ["tenant", "min_accuracy", "min_macro_f1", "max_slice_gap", "max_flip_rate", "require_fairness",
                      "updated_at", "updated_by"],
    "audit_log": ["seq", "tenant", "actor", "action", "target", "client", "result", "error", "at", "prev_hash", "hash"],
    "audit_head": ["id", "seq", "hash"],
    "tenant_quotas": ["tenant", "rpm", "key_rpm", "jobs", "storage_mb", "train_minutes", "redact_pii", "updated_at"],
    "tenant_keys": ["id", "tenant", "wrapped", "master_fingerprint", "created_at"],
}
ALL_STEPS = ["m001_initial", "m002_service", "m003_alias_events", "m004_registry_changes", "m005_predictions",
             "m006_monitoring", "m007_release", "m008_console_sessions", "m009_release_gates", "m010_audit_quotas",
             "m011_tenant_keys"]


@pytest.fixture
def engine(db_url):
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


def test_blank_database_is_migrated_to_the_expected_schema(engine):
    assert applied_migrations(engine) == []
    assert migrate(engine) == ALL_STEPS
    assert applied_migrations(engine) == ALL_STEPS
    schema = inspect(engine)
    assert sorted(schema.get_table_names()) == sorted(EXPECTED_COLUMNS)
    for table, columns in EXPECTED_COLUMNS.items():
        assert [column["name"] for column in schema.get_columns(table)] == columns
    assert [sorted(c["column_names"]) for c in schema.get_unique_constraints("models")] == [["name", "tenant"]]
    assert [sorted(c["column_names"]) for c in schema.get_unique_constraints("model_versions")] == [
        ["model_id", "version"]]
    assert schema.get_pk_constraint("aliases")["constrained_columns"] == ["model_id", "alias"]
    assert sorted(
        (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
        for fk in schema.get_foreign_keys("aliases")
    ) == [(("model_id",), "models", ("id",)), (("model_id", "version"), "model_versions", ("model_id", "version"))]
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in schema.get_foreign_keys("model_versions")] == [
        (["model_id"], "models")]
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in schema.get_foreign_keys("api_keys")] == [
        (["tenant"], "tenants")]
    assert [c["column_names"] for c in schema.get_unique_constraints("api_keys")] == [["secret_hash"]]
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in schema.get_foreign_keys("alias_events")] == [
        (["model_id"], "models")]
    assert [(i["name"], i["column_names"]) for i in schema.get_indexes("alias_events")] == [
        ("ix_alias_events_model", ["model_id", "id"])]
    assert sorted((i["name"], i["column_names"]) for i in schema.get_indexes("predictions")) == [
        ("ix_predictions_tenant_created", ["tenant", "created_at", "id"]),
        ("ix_predictions_tenant_model", ["tenant", "model_name", "version", "created_at"])]


def test_migrating_twice_is_a_no_op(engine):
    migrate(engine)
    assert migrate(engine) == []
    assert applied_migrations(engine) == ALL_STEPS


def test_opening_a_store_migrates(db_url, engine):
    SqlRegistryStore(db_url).close()
    assert applied_migrations(engine) == ALL_STEPS


def test_a_failing_step_leaves_nothing_behind(engine, monkeypatch):
    def broken(conn):
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER)")
        raise RuntimeError("step failed")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m999_broken", broken)])
    with pytest.raises(RuntimeError, match="step failed"):
        migrate(engine)
    assert applied_migrations(engine) == ALL_STEPS
    assert "half_done" not in inspect(engine).get_table_names()
