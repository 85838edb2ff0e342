"""``rehearsal pricing``: how a model name resolves and what it costs on a date, and every priced model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.errors import ConfigError
from engine.pricing import Catalog, ModelPrice, PriceQuote, load_catalog
from engine.settings import get_settings
from service.cli._common import JsonOpt, PricingOpt, out, print_json

app = typer.Typer(help="List prices: genai-prices by date, with a pricing file's overrides.", no_args_is_help=True)

ProviderOpt = Annotated[
    str | None, typer.Option("--provider", help="The provider that bills it (openai, azure, bedrock, vertex_ai…).")
]


def catalog_at(pricing: Path | None) -> Catalog:
    """The catalog of ``--pricing`` (default ``$REHEARSAL_PRICING`` or the shipped file)."""
    return load_catalog(pricing or get_settings().pricing)


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--date {value!r}: expected YYYY-MM-DD", param="--date") from None


def _rate(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4g}"


def quote_view(quote: PriceQuote) -> Group:
    """The resolution, both rate sets, tiers, profile and price changes of one model."""
    std, batch = quote.standard, quote.batch
    header = Text.assemble(
        (quote.name, "bold"),
        f" → {quote.canonical or quote.name} (billed by {quote.provider})\n",
        f"prices in force on {quote.date:%Y-%m-%d}, USD per million tokens; source: {std.source}",
    )
    table = Table(title_justify="left")
    for col in ("", "standard", "batch"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("input", _rate(std.input_per_mtok), _rate(batch.input_per_mtok))
    table.add_row("cached input (read)", _rate(std.cached_rate), _rate(batch.cached_rate))
    table.add_row("cache write", _rate(std.cache_write_per_mtok), _rate(batch.cache_write_per_mtok))
    table.add_row("output", _rate(std.output_per_mtok), _rate(batch.output_per_mtok))
    parts: list[Text | Table] = [header, table, Text(f"batch: {batch.source}", style="dim")]
    for tier in std.tiers:
        parts.append(
            Text(
                f"prompts over {tier.above_input_tokens:,} tokens: input {_rate(tier.input_per_mtok)}, "
                f"cached {_rate(tier.cached_rate)}, output {_rate(tier.output_per_mtok)} (the whole request)"
            )
        )
    parts.append(
        Text(
            f"latency profile: {std.ttft_ms:g} ms to first token, {std.output_tokens_per_s:g} tokens/s, "
            f"quality tier {std.quality_tier} ({std.profile})"
        )
    )
    if quote.changes:
        parts.append(Text("price changes: " + ", ".join(f"{d:%Y-%m-%d}" for d in quote.changes)))
    return Group(*parts)


@app.command()
def show(
    model: Annotated[str, typer.Argument(help="A model name as logged: dated, provider-prefixed or cloud-hosted.")],
    date: Annotated[str | None, typer.Option("--date", help="Prices in force on this day (default today).")] = None,
    provider: ProviderOpt = None,
    pricing: PricingOpt = None,
    json_: JsonOpt = False,
) -> None:
    """How MODEL resolves and its standard and batch rates on a date."""
    quote = catalog_at(pricing).quote(model, on=_date(date), provider=provider)
    if json_:
        print_json(quote)
    else:
        out.print(quote_view(quote))


def list_table(rows: list[tuple[str, ModelPrice]]) -> Table:
    """One line per priced model (an override is marked)."""
    table = Table(title="Priced models (today, USD per million tokens)", title_justify="left")
    table.add_column("provider")
    table.add_column("model", no_wrap=True)
    for col in ("input", "cached", "cache write", "output"):
        table.add_column(col, justify="right")
    for name, p in rows:
        marks = [m for m, on in (("tiers", p.tiers), ("override", p.source.startswith("override"))) if on]
        table.add_row(
            p.provider,
            name + (f" ({', '.join(marks)})" if marks else ""),
            _rate(p.input_per_mtok),
            _rate(p.cached_input_per_mtok),
            _rate(p.cache_write_per_mtok),
            _rate(p.output_per_mtok),
        )
    return table


@app.command("list")
def list_(provider: ProviderOpt = None, pricing: PricingOpt = None, json_: JsonOpt = False) -> None:
    """Every model the catalog prices today: the pricing file's overrides, then genai-prices'."""
    catalog = catalog_at(pricing)
    rows = catalog.listing(provider)
    if provider and not rows:
        raise ConfigError(f"no priced models for provider {provider!r}", param="--provider")
    if json_:
        print_json([{"name": name, **price.model_dump(mode="json")} for name, price in rows])
    else:
        out.print(list_table(rows))
        about = catalog.describe()
        overrides = f"; overrides: {about['overrides']}" if about["overrides"] else ""
        out.print(f"{len(rows):,} models; list prices: {about['source']} {about['version']}{overrides}")
