import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from engine.errors import EmptyWindowError, LogSchemaError
from engine.logs import Filters, Window, check_prompts, inspect_store, load_window, partition_files, write_partitioned
from tests.conftest import STORE_END, log_frame

UTC = dt.UTC


def _window(days_back: int = 2, **filters: list[str]) -> Window:
    end = dt.datetime.combine(STORE_END, dt.time(), tzinfo=UTC)
    return Window("demo", end - dt.timedelta(days=days_back), end, Filters(**filters))


def test_window_is_half_open_in_utc(tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 4, 1, tzinfo=UTC)
    frame = log_frame({"timestamp": t0 + dt.timedelta(hours=h), "request_id": f"h{h}"} for h in (-1, 0, 23, 24))
    write_partitioned(frame, tmp_path, "p")
    got = load_window(str(tmp_path), Window("p", t0, t0 + dt.timedelta(days=1)))
    assert sorted(got["request_id"]) == ["h0", "h23"]
    assert got.schema["timestamp"] == pl.Datetime("us", "UTC")


def test_partitions_outside_the_window_are_never_opened(tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 4, 1, tzinfo=UTC)
    write_partitioned(log_frame([{"timestamp": t0}]), tmp_path, "p")
    junk = tmp_path / "project_id=p" / "date=2026-03-01"
    junk.mkdir()
    (junk / "x.parquet").write_bytes(b"not parquet at all")
    other_project = tmp_path / "project_id=q" / "date=2026-04-01"
    other_project.mkdir(parents=True)
    (other_project / "x.parquet").write_bytes(b"junk")
    assert load_window(str(tmp_path), Window("p", t0, t0 + dt.timedelta(hours=1))).height == 1
    assert [f.parent.name for f in partition_files(str(tmp_path), "p", [t0.date()])] == ["date=2026-04-01"]


def test_filters_are_any_of(log_store: Path) -> None:
    everything = load_window(str(log_store), _window())
    only = load_window(str(log_store), _window(models=["gpt-4o", "gpt-4o-mini"]))
    assert set(only["model"]) == {"gpt-4o", "gpt-4o-mini"}
    assert only.height == everything.filter(pl.col("model").is_in(["gpt-4o", "gpt-4o-mini"])).height
    tagged = load_window(str(log_store), _window(tags=["tier:enterprise", "feature:coding"]))
    expected = everything.filter(
        pl.col("tags").list.contains("tier:enterprise") | pl.col("tags").list.contains("feature:coding")
    )
    assert tagged.height == expected.height > 0
    user = everything["end_user_id"][0]
    assert set(load_window(str(log_store), _window(end_user_ids=[user]))["end_user_id"]) == {user}


def test_empty_window_names_the_project_and_range(log_store: Path) -> None:
    far = dt.datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(EmptyWindowError, match="no log rows for project 'demo'"):
        load_window(str(log_store), Window("demo", far, far + dt.timedelta(days=1)))
    with pytest.raises(EmptyWindowError, match="windowEnd must be after windowStart"):
        load_window(str(log_store), Window("demo", far, far))


def _write(tmp_path: Path, frame: pl.DataFrame) -> Path:
    target = tmp_path / "project_id=p" / "date=2026-04-01"
    target.mkdir(parents=True, exist_ok=True)
    frame.drop("project_id").write_parquet(target / "bad.parquet")
    return target / "bad.parquet"


DAY = Window("p", dt.datetime(2026, 4, 1, tzinfo=UTC), dt.datetime(2026, 4, 2, tzinfo=UTC))


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, log_frame([{}]).drop("latency_ms"))
    with pytest.raises(LogSchemaError) as info:
        load_window(str(tmp_path), DAY)
    assert str(path) in info.value.message
    assert "'latency_ms' is missing" in info.value.message
    assert info.value.param == "latency_ms"


def test_wrong_type_names_expected_and_found(tmp_path: Path) -> None:
    _write(tmp_path, log_frame([{}]).with_columns(pl.col("input_tokens").cast(pl.String)))
    with pytest.raises(LogSchemaError, match=r"bad\.parquet: column 'input_tokens' has type String, expected Int64"):
        load_window(str(tmp_path), DAY)


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "project_id=p" / "date=2026-04-01"
    target.mkdir(parents=True)
    (target / "broken.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(LogSchemaError, match=r"broken\.parquet: not a readable Parquet file"):
        load_window(str(tmp_path), DAY)


def test_compatible_types_are_conformed(tmp_path: Path) -> None:
    frame = (
        log_frame([{"cached_input_tokens": None}])
        .with_columns(
            pl.col("input_tokens").cast(pl.Int32),
            pl.col("model").cast(pl.Categorical),
            pl.col("latency_ms").cast(pl.Float32),
            pl.col("timestamp").dt.replace_time_zone(None),
        )
        .drop("end_user_id", "tags", "request_json")
    )
    _write(tmp_path, frame)
    got = load_window(str(tmp_path), DAY)
    assert got.schema["model"] == pl.String
    assert got.schema["input_tokens"] == pl.Int64
    assert got["cached_input_tokens"].to_list() == [0]
    assert got["tags"].to_list() == [None]
    assert got["project_id"].to_list() == ["p"]


def test_inspect_counts_rows_and_reports_bad_files(log_store: Path, tmp_path: Path) -> None:
    counts, problems = inspect_store(str(log_store))
    assert problems == []
    assert int(counts["rows"].sum()) == 8 * 3000
    assert set(counts["project_id"]) == {"demo"}
    _write(tmp_path, log_frame([{}]).drop("status"))
    _, problems = inspect_store(str(tmp_path))
    assert len(problems) == 1 and "'status' is missing" in problems[0]


BROKEN_ROWS = {
    "model": ({"model": None}, "model is missing (null) in 1 row (e.g. request r1)"),
    "input_tokens": ({"input_tokens": -5}, "input_tokens is negative in 1 row (e.g. request r1)"),
    "cached_input_tokens": ({"cached_input_tokens": 2000}, "cached_input_tokens is above input_tokens"),
    "latency_ms": ({"latency_ms": float("nan")}, "latency_ms is negative or not finite"),
    "status": ({"status": "timeout"}, "status is neither 'ok' nor 'error'"),
}


@pytest.mark.parametrize("column", list(BROKEN_ROWS))
def test_rows_that_break_the_schema_are_refused_naming_the_column_and_a_request(tmp_path: Path, column: str) -> None:
    change, sentence = BROKEN_ROWS[column]
    t0 = dt.datetime(2026, 4, 1, tzinfo=UTC)
    write_partitioned(log_frame([{"timestamp": t0}, {"timestamp": t0, **change}]), tmp_path, "p")
    with pytest.raises(LogSchemaError, match="break the log schema") as caught:
        load_window(str(tmp_path), Window("p", t0, t0 + dt.timedelta(hours=1)))
    assert caught.value.param == column and sentence in caught.value.message
    _, problems = inspect_store(str(tmp_path))
    assert sentence in problems[0] and "part-0.parquet" in problems[0]


@pytest.mark.parametrize("request_json", ["not json", '[{"role": "user"}]', '{"messages": "hi"}', '{"prompt": "x"}'])
def test_prompts_that_are_not_chat_requests_are_refused_before_a_run_sends_them(request_json: str) -> None:
    rows = log_frame(
        [{"request_json": '{"messages": [{"role": "user", "content": "hi"}]}'}, {"request_json": request_json}]
    )
    with pytest.raises(LogSchemaError, match="request_json is not an OpenAI chat request") as caught:
        check_prompts(rows)
    assert caught.value.param == "request_json" and "request r1" in caught.value.message
    check_prompts(rows.head(1))


def test_a_partition_that_is_not_a_date_is_named_not_skipped(tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 4, 1, tzinfo=UTC)
    write_partitioned(log_frame([{"timestamp": t0}]), tmp_path, "p")
    for name in ("date=not-a-date", "date=2026-13-45"):
        stray = tmp_path / "project_id=p" / name
        stray.mkdir()
        write_partitioned(log_frame([{"timestamp": t0}]), tmp_path / "stray", "p")
    with pytest.raises(LogSchemaError, match="not a date=YYYY-MM-DD partition") as caught:
        load_window(str(tmp_path), Window("p", t0, t0 + dt.timedelta(hours=1)))
    assert caught.value.param == "date"
    counts, problems = inspect_store(str(tmp_path))
    assert int(counts.get_column("rows").sum()) == 1
    assert sorted(p.rsplit("/", 1)[-1].split(":")[0] for p in problems) == ["date=2026-13-45", "date=not-a-date"]
