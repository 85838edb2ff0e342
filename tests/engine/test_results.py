import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine.errors import ConfigError
from engine.fanout._journal import append_sent, append_settled
from engine.results import PAIR_SCHEMA, ROW_COLUMNS, PairStore, query_pairs


def _row(i: int, similarity: float | None, status: str = "ok", delta: float = 0.0) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(PAIR_SCHEMA)
    return row | {
        "request_id": f"r{i:02d}",
        "timestamp": dt.datetime(2026, 4, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
        "candidate_status": status,
        "similarity": similarity,
        "cost_delta_usd": delta,
    }


ROWS = [_row(0, 0.9), _row(1, 0.2, delta=0.5), _row(2, None, "error"), _row(3, 0.55, delta=-0.2), _row(4, 0.2)]


def test_checkpoints_append_atomically_and_journal_replays(tmp_path: Path) -> None:
    store = PairStore(tmp_path, "exp_1")
    store.append(ROWS[:2])
    store.append(ROWS[2:])
    assert store.frame().height == 5 and store.done_ids() == {f"r{i:02d}" for i in range(5)}
    assert not list(store.dir.glob("*.tmp"))
    append_sent(store.journal, [("a", 0.25), ("b", 1e-7), ("r00", 0.5)])  # as the spend tracker writes it
    with store.journal.open("a") as legacy:  # journals of earlier versions: bare ids, and "-" for never sent
        legacy.write("+c\n+d\n-d\n")
    assert store.sent() == {"a": 0.25, "b": 1e-7, "r00": 0.5, "c": 0.0}
    append_settled(store.journal, [("a", 0.0125)])  # answered (the tracker settled it), never recorded
    assert store.unrecorded() == {"a": 0.0125, "b": 1e-7, "c": 0.0}  # r00 was recorded
    store.write_final(store.frame())
    assert store.final.exists() and not list(store.dir.glob("part-*")) and store.frame().height == 5


def _ids(page: pl.DataFrame) -> list[str]:
    return page.get_column("request_id").to_list()


def test_sorts_filters_and_cursor() -> None:
    frame = pl.DataFrame(ROWS, schema=PAIR_SCHEMA)
    page, _ = query_pairs(frame, sort="similarity_asc", limit=10)
    assert _ids(page) == ["r01", "r04", "r03", "r00", "r02"]  # ties by id, unscored last
    page, _ = query_pairs(frame, sort="similarity_desc", limit=10)
    assert _ids(page) == ["r00", "r03", "r01", "r04", "r02"]
    assert _ids(query_pairs(frame, sort="cost_delta_desc", limit=1)[0]) == ["r01"]
    assert _ids(query_pairs(frame, sort="cost_delta_asc", limit=1)[0]) == ["r03"]
    assert _ids(query_pairs(frame, limit=1)[0]) == ["r04"]  # timestamp_desc by default
    assert _ids(query_pairs(frame, sort="timestamp_asc", limit=1)[0]) == ["r00"]
    assert _ids(query_pairs(frame, candidate_status="error", limit=10)[0]) == ["r02"]
    assert "r02" not in _ids(query_pairs(frame, min_similarity=0.0, limit=10)[0])
    assert _ids(query_pairs(frame, sort="similarity_asc", max_similarity=0.5, limit=10)[0]) == ["r01", "r04"]
    first, cursor = query_pairs(frame, sort="similarity_asc", limit=2)
    second, cursor2 = query_pairs(frame, sort="similarity_asc", limit=2, cursor=cursor)
    third, cursor3 = query_pairs(frame, sort="similarity_asc", limit=2, cursor=cursor2)
    assert _ids(first) + _ids(second) + _ids(third) == ["r01", "r04", "r03", "r00", "r02"]
    assert cursor3 is None


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"sort": "best"}, "sort"),
        ({"candidate_status": "maybe"}, "candidate_status"),
        ({"limit": 0}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
    ],
)
def test_bad_queries_name_the_parameter(query: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError) as info:
        query_pairs(pl.DataFrame(ROWS, schema=PAIR_SCHEMA), **query)
    assert info.value.param == param


@pytest.mark.parametrize("sort", ["similarity_asc", "similarity_desc", "cost_delta_desc", "timestamp_asc"])
def test_shallow_pages_match_a_full_sort_page_after_page(sort: str) -> None:
    import random

    rng = random.Random(7)
    rows = [
        _row(
            i, rng.choice([None, 0.1, 0.5, round(rng.random(), 2)]), rng.choice(["ok", "error"]), rng.choice([0.0, 1.0])
        )
        for i in range(3000)
    ]
    rows = [r | {"request_id": f"r{i:05d}"} for i, r in enumerate(rng.sample(rows, len(rows)))]
    frame = pl.DataFrame(rows, schema=PAIR_SCHEMA)
    column, descending = {"similarity_asc": ("similarity", False), "similarity_desc": ("similarity", True)}.get(
        sort, ("cost_delta_usd", True) if sort == "cost_delta_desc" else ("timestamp", False)
    )
    expected = frame.sort([column, "request_id"], descending=[descending, False], nulls_last=True)
    seen, cursor = [], None
    for _ in range(70):  # the first pages take the top-k path, later ones the full sort
        page, cursor = query_pairs(frame, sort=sort, limit=50, cursor=cursor)
        seen.extend(page.get_column("request_id").to_list())
        if cursor is None:
            break
    assert seen == expected.get_column("request_id").to_list()[: len(seen)] and len(seen) == 3000


NEW_COLUMNS = ("candidate_status_code", "candidate_error_message", "candidate_reported_cost_usd")


def test_results_written_before_the_provider_columns_still_load(tmp_path: Path) -> None:
    old_schema = {c: t for c, t in PAIR_SCHEMA.items() if c not in NEW_COLUMNS}
    store = PairStore(tmp_path, "exp_old")
    store.dir.mkdir(parents=True)
    pl.DataFrame(ROWS[:2], schema=old_schema).write_parquet(store.dir / "part-000000.parquet")  # an older run
    store.append([ROWS[2] | {"candidate_status_code": 404, "candidate_error_message": "no such model"}])  # resumed
    frame = store.frame()
    assert list(frame.columns) == list(PAIR_SCHEMA) and frame.height == 3
    assert frame.get_column("candidate_status_code").to_list() == [None, None, 404]
    store.write_final(frame)

    old_final = PairStore(tmp_path, "exp_final")
    old_final.dir.mkdir(parents=True)
    pl.DataFrame(ROWS, schema=old_schema).write_parquet(old_final.final)
    rows = old_final.read_final(ROW_COLUMNS)
    assert list(rows.columns) == ROW_COLUMNS and rows.height == len(ROWS)
    assert rows.get_column("candidate_error_message").null_count() == len(ROWS)
    assert rows.schema["candidate_reported_cost_usd"] == pl.Float64
    assert list(old_final.frame().columns) == list(PAIR_SCHEMA)
