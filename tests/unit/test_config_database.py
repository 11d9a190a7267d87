"""Where an app's runs live: `--database-url`, else `$TAKO_DATABASE_URL`, else tako.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from tako.takod.config import ConfigError, load_config

FILE = "postgresql://file@db/app"
ENV = "postgresql://env@db/app"
FLAG = "postgresql://flag@db/app"


def app(tmp_path: Path, url: str | None) -> Path:
    storage = f'[storage]\nurl = "{url}"\n' if url else ""
    (tmp_path / "tako.toml").write_text(f'name = "shop"\n{storage}')
    return tmp_path


def test_the_flag_beats_the_variable_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAKO_DATABASE_URL", raising=False)
    folder = app(tmp_path, FILE)
    assert load_config(folder).storage.url == FILE
    monkeypatch.setenv("TAKO_DATABASE_URL", ENV)
    assert load_config(folder).storage.url == ENV
    assert load_config(folder, FLAG).storage.url == FLAG


def test_a_flag_wins_over_a_variable_that_is_not_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAKO_DATABASE_URL", "mysql://elsewhere/app")
    folder = app(tmp_path, None)
    assert load_config(folder, FLAG).storage.url == FLAG
    with pytest.raises(ConfigError, match=r"\$TAKO_DATABASE_URL must be a postgresql:// URL"):
        load_config(folder)


def test_a_file_url_that_is_not_postgresql_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAKO_DATABASE_URL", raising=False)
    folder = app(tmp_path, "sqlite:///runs.db")
    with pytest.raises(ConfigError, match=r"tako.toml: \[storage\] url must be a postgresql://"):
        load_config(folder)
    assert load_config(app(tmp_path, None)).storage.url is None  # unset: SQLite
