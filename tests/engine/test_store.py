import datetime as dt
from pathlib import Path

import pytest

from engine.errors import ConfigError, NotFound
from engine.schema import Experiment, FiltersSpec, Project
from engine.store import Store, new_id, utcnow


def _experiment(project: str, at: dt.datetime) -> Experiment:
    return Experiment(
        id=new_id("exp"),
        name="x",
        project_id=project,
        mode="routing_only",
        status="completed",
        candidate_policy="single",
        candidate_config={"model": "m"},
        window_start=at,
        window_end=at,
        filters=FiltersSpec(),
        created_at=at,
    )


def test_projects_round_trip_and_duplicates_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    project = Project(id="p1", logging_mode="metadata_only", created_at=utcnow())
    store.put_project(project, create=True)
    assert store.get_project("p1") == project
    with pytest.raises(ConfigError, match="already exists"):
        store.put_project(project, create=True)
    with pytest.raises(NotFound):
        store.get_project("nope")
    # WAL mode is on.
    import sqlite3

    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_experiments_page_newest_first_and_scope_by_project(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    made = [store.put_experiment(_experiment("a" if i % 2 else "b", t0 + dt.timedelta(minutes=i))) for i in range(5)]
    page, cursor = store.list_experiments(limit=2)
    assert [e.id for e in page] == [made[4].id, made[3].id]
    page2, cursor2 = store.list_experiments(limit=2, cursor=cursor)
    assert [e.id for e in page2] == [made[2].id, made[1].id]
    page3, cursor3 = store.list_experiments(limit=2, cursor=cursor2)
    assert [e.id for e in page3] == [made[0].id] and cursor3 is None
    only_a, _ = store.list_experiments(project_ids=["a"], limit=10)
    assert {e.project_id for e in only_a} == {"a"} and len(only_a) == 2
    with pytest.raises(ConfigError, match="unknown cursor"):
        store.list_experiments(cursor="exp_nope")


def test_routing_config_versions_increment_per_slug(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    v1 = store.add_routing_config("p", "production", "single", {"model": "a"})
    v2 = store.add_routing_config("p", "production", "single", {"model": "b"}, source_experiment_id="exp_1")
    other = store.add_routing_config("q", "production", "single", {"model": "c"})
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert store.get_routing_config("p", "production").config == {"model": "b"}
    assert store.get_routing_config("p", "production", 1).config == {"model": "a"}
    with pytest.raises(NotFound, match="'@production:9'"):
        store.get_routing_config("p", "production", 9)
    assert [v.version for v in store.list_routing_configs("p")] == [2, 1]
