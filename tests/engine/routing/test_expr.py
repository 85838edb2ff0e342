import contextlib
import datetime as dt
import time

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.routing import compile_condition

FRAME = pl.DataFrame(
    {
        "model": ["gpt-4o", "gpt-4o-mini", "claude"],
        "provider": ["openai", "openai", "anthropic"],
        "end_user_id": ["eu_1", None, "us_2"],
        "tags": [["tier:free", "feature:chat"], [], None],
        "input_tokens": [100, 5000, 2500],
        "output_tokens": [10, 20, 30],
        "timestamp": [dt.datetime(2026, 4, 1, h, tzinfo=dt.UTC) for h in (3, 12, 18)],
    }
)


def matches(rule: str) -> list[bool]:
    return FRAME.select(compile_condition(rule, param="p").expr).to_series().to_list()


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('tags contains "tier:free"', [True, False, False]),
        ('"feature:chat" in tags', [True, False, False]),
        ('not ("tier:free" in tags)', [False, True, True]),
        ("input_tokens > 2000 and input_tokens <= 5000", [False, True, True]),
        ("input_tokens * 2 + 10 >= 5010", [False, True, True]),
        ('model in ["gpt-4o", "claude"]', [True, False, True]),
        ('model not in ["gpt-4o"]', [False, True, True]),
        ('end_user_id startswith "eu_"', [True, False, False]),
        ('end_user_id == null or provider == "anthropic"', [False, True, True]),
        ('model matches "^gpt-4o(-mini)?$"', [True, True, False]),
        ("hour >= 9 and hour < 17", [False, True, False]),
        ("weekday == 3", [True, True, True]),
        ('(input_tokens < 1000 or model endswith "mini") and provider == "openai"', [True, True, False]),
        ("-output_tokens < -15", [False, True, True]),
    ],
)
def test_rules_compile_to_the_expected_rows(rule: str, expected: list[bool]) -> None:
    assert matches(rule) == expected


def test_columns_read_are_reported() -> None:
    assert compile_condition('tags contains "a" and hour > 2', param="p").columns == {"tags", "timestamp"}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("__import__('os').system('true')", "unexpected character '.'"),
        ("__import__('os')", "unknown field '__import__'"),
        ("input_tokens >", "unexpected 'end of rule'"),
        ('input_tokens > "a"', "cannot compare a num with a str"),
        ("tags == 1", "does not apply to lists"),
        ("model", "expected a condition"),
        ("input_tokens > 1 ; drop", "unexpected character ';'"),
        ('model matches "("', "bad regular expression"),
        ("model in [model]", "list items must be literals"),
        ("", "non-empty"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_field(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        compile_condition(rule, param="candidateConfig.rules.0.if")
    assert info.value.param == "candidateConfig.rules.0.if"


# --- fuzzing: any input is a compiled rule or a ConfigError, quickly -----------------------------------------
RULE_ATOMS = [
    "input_tokens", "output_tokens", "hour", "model", "tags", "end_user_id", "null", "true", "1", "2.5", "99999",
    '"gpt-4o"', "'eu_'", "(", ")", "[", "]", ",", "and", "or", "not", "in", "contains", "startswith", "matches",
    "==", "!=", "<", ">=", "+", "-", "*", "/", '"(?=x)"', '"a{1000}{1000}"', '"(a)\\\\1"', "9" * 30,
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(RULE_ATOMS), min_size=1, max_size=400))
def test_any_token_soup_compiles_or_is_a_config_error_in_bounded_time(atoms: list[str]) -> None:
    source = " ".join(atoms)
    started = time.perf_counter()
    try:
        compiled = compile_condition(source, param="rule")
    except ConfigError as exc:
        assert exc.param == "rule" and len(exc.message) < 400
    else:
        FRAME.lazy().select(compiled.expr).collect()  # and it evaluates
    assert time.perf_counter() - started < 1.0, source[:200]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_any_text_compiles_or_is_a_config_error(source: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(ConfigError):
        compile_condition(source, param="rule")
    assert time.perf_counter() - started < 1.0
