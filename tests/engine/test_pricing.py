from pathlib import Path

import polars as pl
import pytest

from engine.errors import ConfigError
from engine.pricing import Catalog, cost_at, load_catalog, row_cost


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
