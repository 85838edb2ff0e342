import datetime as dt
from pathlib import Path

import genai_prices
import polars as pl
import pytest
from genai_prices import Usage, calc_price

from engine.errors import ConfigError
from engine.pricing import Catalog, ModelPrice, cost_at, load_catalog, row_cost


def test_shipped_catalog_covers_ten_chat_and_two_embedding_models(shipped_catalog: Catalog) -> None:
    assert len(shipped_catalog.models) >= 10
    assert len({m.provider for m in shipped_catalog.models.values()}) >= 2
    assert len(shipped_catalog.embeddings) >= 2
    assert shipped_catalog.models["gpt-4o"].input_per_mtok == 2.50
    assert shipped_catalog.models["gpt-4o-mini"].output_per_mtok == 0.60


def test_row_cost_formula_by_hand(toy_catalog: Catalog) -> None:
    frame = pl.DataFrame(
        {"input_tokens": [1000, 2_000_000], "output_tokens": [500, 0], "cached_input_tokens": [400, 1_000_000]}
    )
    got = frame.select(cost_at(toy_catalog.price("big"))).to_series().to_list()
    # ((1000-400)*10 + 400*5 + 500*20) / 1e6 and ((1e6)*10 + 1e6*5) / 1e6
    assert got == pytest.approx([(6000 + 2000 + 10000) / 1e6, 15.0])


def test_cached_rate_defaults_to_input_price(toy_catalog: Catalog) -> None:
    assert toy_catalog.price("other").cached_rate == 2


def test_row_cost_is_linear_in_tokens() -> None:
    expr = row_cost(
        pl.col("i"), pl.col("o"), pl.col("c"), input_per_mtok=3.0, output_per_mtok=7.0, cached_input_per_mtok=1.0
    )
    one = pl.DataFrame({"i": [100], "o": [50], "c": [10]}).select(expr).item()
    three = pl.DataFrame({"i": [300], "o": [150], "c": [30]}).select(expr).item()
    assert three == pytest.approx(3 * one)


def test_unknown_model_names_the_field(toy_catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'") as info:
        toy_catalog.price("nope", param="candidateConfig.model")
    assert info.value.param == "candidateConfig.model"


def test_bad_catalog_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(
        "models:\n  m: {provider: x, input_per_mtok: -1, output_per_mtok: 1, ttft_ms: 1, output_tokens_per_s: 1}\n"
    )
    with pytest.raises(ConfigError, match=r"models\.m\.input_per_mtok"):
        load_catalog(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- genai-prices behind the catalog
USAGE = {"input_tokens": 12_000, "cached_input_tokens": 3_000, "output_tokens": 700}


def _ours(price: ModelPrice, usage: dict[str, int] = USAGE) -> float:
    frame = pl.DataFrame({k: [v] for k, v in usage.items()})
    return float(frame.select(cost_at(price)).item())


def _theirs(ref: str, *, provider: str | None = None, when: dt.datetime | None = None, **usage: int) -> float:
    u = USAGE | usage
    tokens = Usage(
        input_tokens=u["input_tokens"], cache_read_tokens=u["cached_input_tokens"], output_tokens=u["output_tokens"]
    )
    return float(calc_price(tokens, ref, provider_id=provider, genai_request_timestamp=when).total_price)


@pytest.mark.parametrize(
    ("name", "canonical", "genai_ref", "genai_provider"),
    [
        ("claude-3-5-sonnet-20241022", "anthropic:claude-3-5-sonnet", "claude-3-5-sonnet-20241022", None),
        ("anthropic/claude-3-5-haiku-20241022", "anthropic:claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", None),
        ("gpt-4o-2024-08-06", "openai:gpt-4o", "gpt-4o-2024-08-06", None),
        ("azure/gpt-4o", "azure:gpt-4o", "gpt-4o", "azure"),
        (
            "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
            "aws:regional.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "aws",
        ),
        ("vertex_ai/gemini-2.5-pro", "google:gemini-2.5-pro", "gemini-2.5-pro", "google"),
        ("openrouter/openai/gpt-4o", "openrouter:openai/gpt-4o", "openai/gpt-4o", "openrouter"),
        ("claude-opus-4-20250514", "anthropic:claude-opus-4-0", "claude-opus-4-20250514", None),
    ],
)
def test_dated_prefixed_and_cloud_names_resolve_and_cost_what_genai_prices_says(
    shipped_catalog: Catalog, name: str, canonical: str, genai_ref: str, genai_provider: str | None
) -> None:
    price = shipped_catalog.price(name)
    assert price.canonical == canonical
    assert price.provider == canonical.partition(":")[0]
    assert shipped_catalog.provider_of(name) == price.provider
    assert _ours(price) == pytest.approx(_theirs(genai_ref, provider=genai_provider), rel=1e-12)


def test_the_rows_provider_picks_who_bills_a_bare_name(shipped_catalog: Catalog) -> None:
    assert shipped_catalog.price("gpt-4o").canonical == "openai:gpt-4o"
    assert shipped_catalog.price("gpt-4o", provider="azure").canonical == "azure:gpt-4o"
    assert shipped_catalog.price("claude-3-5-haiku", provider="vertex_ai").provider == "google"
    assert shipped_catalog.price("gpt-4o", provider="some-gateway").canonical == "openai:gpt-4o"  # unknown: ignored


def test_cached_read_cache_write_and_batch_rates(shipped_catalog: Catalog) -> None:
    sonnet = shipped_catalog.price("claude-sonnet-4")
    assert (sonnet.input_per_mtok, sonnet.cached_rate, sonnet.cache_write_per_mtok, sonnet.output_per_mtok) == (
        3.0,
        0.3,
        3.75,
        15.0,
    )
    # genai-prices' own batch price (OpenAI's batch API): input and output halved, cached reads as listed.
    batch = shipped_catalog.rates("gpt-4o", batch=True)
    assert batch is not None and batch.batch
    assert (batch.input_per_mtok, batch.output_per_mtok, batch.cached_rate) == (1.25, 5.0, 1.25)
    assert "batch price" in batch.source
    # No batch price in genai-prices for this model: the pricing file's factor (50% of list) applies.
    opus, opus_batch = shipped_catalog.price("claude-opus-4"), shipped_catalog.rates("claude-opus-4", batch=True)
    assert opus_batch is not None
    assert opus_batch.input_per_mtok == opus.input_per_mtok / 2 and opus_batch.cache_write_per_mtok == 18.75 / 2
    assert "batch_price_factor" in opus_batch.source
    # A provider without a factor pays list price in batch.
    deepseek = shipped_catalog.rates("deepseek-chat", batch=True)
    assert deepseek is not None and deepseek.input_per_mtok == shipped_catalog.price("deepseek-chat").input_per_mtok


def test_prices_in_force_on_a_date(shipped_catalog: Catalog) -> None:
    # genai-prices records o3's price cut of 2025-06-10 (10/40 -> 2/8 USD per million tokens).
    before, after = (shipped_catalog.price("o3", on=dt.date(2025, 6, d)) for d in (9, 10))
    assert (before.input_per_mtok, before.output_per_mtok) == (10.0, 40.0)
    assert (after.input_per_mtok, after.output_per_mtok) == (2.0, 8.0)
    assert dt.date(2025, 6, 10) in shipped_catalog.changes("o3")
    for day in (9, 10):
        when = dt.datetime(2025, 6, day, 15, tzinfo=dt.UTC)
        assert _ours(shipped_catalog.price("o3", on=when.date())) == pytest.approx(_theirs("o3", when=when), rel=1e-12)


def test_prompt_size_tiers_apply_per_row(shipped_catalog: Catalog) -> None:
    pro = shipped_catalog.price("gemini-2.5-pro")
    assert [t.above_input_tokens for t in pro.tiers] == [200_000]
    frame = pl.DataFrame(
        {"input_tokens": [150_000, 250_000], "cached_input_tokens": [0, 50_000], "output_tokens": [900, 900]}
    )
    got = frame.select(cost_at(pro)).to_series().to_list()
    want = [
        _theirs("gemini-2.5-pro", input_tokens=i, cached_input_tokens=c, output_tokens=900)
        for i, c in [(150_000, 0), (250_000, 50_000)]
    ]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[1] > got[0] * 250 / 150  # the whole request pays the upper tier
    assert pro.at_prompt(250_000).input_per_mtok == pro.tiers[0].input_per_mtok


def test_override_file_wins_and_is_layered_over_the_shipped_one(tmp_path: Path) -> None:
    file = tmp_path / "mine.yaml"
    file.write_text(
        "models:\n"
        "  gpt-4o: {provider: openai, input_per_mtok: 2.0, output_per_mtok: 8.0, cached_input_per_mtok: 1.0}\n"
        "  acme-ft-1: {provider: openai, input_per_mtok: 3.0, output_per_mtok: 12.0}\n"
    )
    catalog = load_catalog(file)
    mine = catalog.price("gpt-4o-2024-08-06")  # a dated alias of the overridden model
    assert (mine.input_per_mtok, mine.output_per_mtok, mine.cached_rate) == (2.0, 8.0, 1.0)
    assert mine.source.startswith(f"override {file}") and mine.canonical == "openai:gpt-4o"
    assert (mine.ttft_ms, mine.quality_tier, mine.profile) == (450, 1, "listed")  # the shipped profile still applies
    assert catalog.price("azure/gpt-4o").input_per_mtok == 2.5  # another provider's price is not overridden
    ft = catalog.price("acme-ft-1")
    assert ft.canonical is None and ft.profile == "default"
    assert catalog.rates("acme-ft-1", batch=True).input_per_mtok == 1.5  # type: ignore[union-attr]
    assert catalog.describe() == {"source": "genai-prices", "version": genai_prices.__version__, "overrides": str(file)}
    assert load_catalog().describe()["overrides"] is None


def test_unlisted_models_get_a_family_profile(shipped_catalog: Catalog) -> None:
    assert shipped_catalog.price("claude-3-5-sonnet-20241022").profile == "family frontier"
    small = shipped_catalog.price("gemini-2.0-flash-lite")
    assert (small.profile, small.quality_tier) == ("family small", 3)
    assert shipped_catalog.price("gpt-4o-2024-08-06").profile == "listed"  # listed as gpt-4o


def test_unpriced_model_error_says_how_to_add_it(shipped_catalog: Catalog) -> None:
    assert shipped_catalog.rates("acme-llm-7") is None and shipped_catalog.provider_of("acme-llm-7") is None
    with pytest.raises(ConfigError) as info:
        shipped_catalog.price("acme-llm-7", param="candidateConfig.model")
    message = info.value.message
    assert "unknown model 'acme-llm-7'" in message and "REHEARSAL_PRICING / --pricing" in message
    assert "models: {acme-llm-7: {provider: openai, input_per_mtok: " in message


def test_only_the_bundled_snapshot_is_read(shipped_catalog: Catalog) -> None:
    # An auto-updated (or any custom) process-wide snapshot does not change the catalog's prices.
    from genai_prices import data_snapshot

    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=[], from_auto_update=True))
    try:
        assert load_catalog().price("gpt-4o").input_per_mtok == 2.5
    finally:
        data_snapshot.set_custom_snapshot(None)


def test_lookups_are_cached(shipped_catalog: Catalog) -> None:
    first = shipped_catalog.rates("gpt-4o-mini", on=dt.date(2026, 1, 5))
    assert shipped_catalog.rates("gpt-4o-mini", on=dt.date(2026, 1, 5)) is first
