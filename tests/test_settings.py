from pathlib import Path

from tailor.settings import Settings


def test_home_and_registry_url_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TAILOR_HOME", str(tmp_path))
    monkeypatch.delenv("TAILOR_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.home == Path(tmp_path)
    assert settings.registry_url == f"sqlite:///{tmp_path}/tailor.db"
    assert settings.artifacts_dir == Path(tmp_path) / "artifacts"


def test_postgres_urls_use_psycopg3(monkeypatch):
    monkeypatch.setenv("TAILOR_DATABASE_URL", "postgresql://u:p@db:5432/tailor")
    assert Settings().registry_url == "postgresql+psycopg://u:p@db:5432/tailor"
    monkeypatch.setenv("TAILOR_DATABASE_URL", "postgresql+psycopg://u@db/t")
    assert Settings().registry_url == "postgresql+psycopg://u@db/t"


def test_size_limit_in_bytes(monkeypatch):
    monkeypatch.setenv("TAILOR_MAX_FILE_MB", "1.5")
    assert Settings().max_file_bytes == 1572864
