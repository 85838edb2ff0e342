"""The catalog: genai-prices' list prices by date, a pricing file's overrides, latency profiles and tiers."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from engine.configfile import load_yaml_model
from engine.errors import ConfigError
from engine.pricing import _genai
from engine.pricing._cost import cost_at, piecewise
from engine.settings import CONFIGS_DIR

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
QualityTier = Annotated[int, Field(ge=1, le=3)]
#: The shipped pricing file: latency profiles, quality tiers, batch factors, embeddings.
SHIPPED = CONFIGS_DIR / "pricing.yaml"
#: When a replay prices the candidate: one date for every row, or each row at its own date.
AsOf = dt.date | Literal["row"]
PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok")
PROFILE_FIELDS = ("ttft_ms", "output_tokens_per_s", "quality_tier")


def today() -> dt.date:
    """Today's UTC date: the date ``asOf: now`` prices at."""
    return dt.datetime.now(dt.UTC).date()


class PriceTier(BaseModel):
    """Prices that apply to a whole request once its prompt passes a size (e.g. Gemini 2.5 Pro above 200k)."""

    model_config = ConfigDict(extra="forbid")

    above_input_tokens: int = Field(ge=0, description="Applies to requests with more input tokens than this.")
    input_per_mtok: NonNegative
    output_per_mtok: NonNegative
    cached_input_per_mtok: NonNegative | None = None
    cache_write_per_mtok: NonNegative | None = None

    @property
    def cached_rate(self) -> float:
        """The cached-input price, falling back to the plain input price."""
        return self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok


class ModelPrice(BaseModel):
    """List prices (USD per million tokens) on one date and the latency profile of one chat model."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(description="Vendor that bills the model, e.g. `openai`, `azure`, `aws`.")
    input_per_mtok: NonNegative = Field(description="Uncached prompt tokens.")
    output_per_mtok: NonNegative = Field(description="Completion tokens, reasoning included.")
    cached_input_per_mtok: NonNegative | None = Field(
        None, description="Prompt tokens read from the provider's cache; defaults to the input price."
    )
    cache_write_per_mtok: NonNegative | None = Field(
        None, description="Prompt tokens written to the provider's cache, where it charges for that."
    )
    tiers: list[PriceTier] = Field(
        default_factory=list, description="Prompt-size tiers, ascending; each row is charged at its own tier."
    )
    ttft_ms: NonNegative = Field(description="Typical time to first token.")
    output_tokens_per_s: Positive = Field(description="Typical streaming rate.")
    quality_tier: QualityTier = Field(2, description="1 = frontier, 2 = strong, 3 = small; used by `cost_optimized`.")
    canonical: str | None = Field(None, description="`provider:model` in genai-prices; null for a model it lacks.")
    source: str = Field("pricing file", description="Where the prices come from (genai-prices version, a file).")
    batch: bool = Field(False, description="Whether these are batch rates.")
    profile: str = Field("listed", description="Where the latency profile and tier come from: listed, family, default.")

    @property
    def cached_rate(self) -> float:
        """The cached-input price, falling back to the plain input price."""
        return self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok

    def at_prompt(self, input_tokens: int) -> ModelPrice:
        """The flat rates of a request with ``input_tokens`` prompt tokens (its tier's, if it passes one)."""
        chosen = [t for t in self.tiers if input_tokens > t.above_input_tokens]
        if not chosen:
            return self.model_copy(update={"tiers": []})
        return self.model_copy(update={**chosen[-1].model_dump(exclude={"above_input_tokens"}), "tiers": []})


class EmbeddingPrice(BaseModel):
    """Price of one embedding model (input tokens only)."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    input_per_mtok: NonNegative


class ModelEntry(BaseModel):
    """One model of a pricing file: a price override (provider, input and output prices), a profile, or both."""

    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(None, description="Vendor that bills it; required with prices.")
    input_per_mtok: NonNegative | None = None
    output_per_mtok: NonNegative | None = None
    cached_input_per_mtok: NonNegative | None = None
    cache_write_per_mtok: NonNegative | None = None
    ttft_ms: NonNegative | None = None
    output_tokens_per_s: Positive | None = None
    quality_tier: QualityTier | None = None

    @model_validator(mode="after")
    def _override_is_complete(self) -> ModelEntry:
        if any(getattr(self, f) is not None for f in PRICE_FIELDS) and (
            self.provider is None or self.input_per_mtok is None or self.output_per_mtok is None
        ):
            raise ValueError("a price override needs provider, input_per_mtok and output_per_mtok")
        return self

    @property
    def is_override(self) -> bool:
        """Whether the entry sets prices (which then win over genai-prices)."""
        return self.input_per_mtok is not None


class Profile(BaseModel):
    """A latency profile and quality tier."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: NonNegative
    output_tokens_per_s: Positive
    quality_tier: QualityTier = 2


class Family(Profile):
    """The profile of models the file does not list whose canonical id matches ``match`` (a regex)."""

    name: str
    match: str

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class PriceQuote(BaseModel):
    """How one name resolves and what it costs on one date: standard and batch rates, and when they change."""

    name: str
    canonical: str | None = Field(description="`provider:model` in genai-prices; null for a model it lacks.")
    provider: str
    date: dt.date
    standard: ModelPrice
    batch: ModelPrice
    changes: list[dt.date] = Field(description="Dates on which its list prices change.")


class _Listed(Mapping[str, ModelPrice]):
    """``catalog.models``: the file's models by name; any name the catalog prices can be looked up."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def __getitem__(self, name: str) -> ModelPrice:
        price = self._catalog.rates(name)
        if price is None:
            raise KeyError(name)
        return price

    def __iter__(self) -> Iterator[str]:
        return iter(self._catalog.entries)

    def __len__(self) -> int:
        return len(self._catalog.entries)


class Catalog(BaseModel):
    """Chat-model list prices by date (genai-prices, with a pricing file's overrides) and embedding prices.

    Lookups are cached per name, provider, date and batch flag: a replay asks per model, an
    import per model and day.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entries: dict[str, ModelEntry] = Field(
        default_factory=dict,
        alias="models",
        description="Per model: a price override (wins over genai-prices), a latency profile and tier, or both.",
    )
    embeddings: dict[str, EmbeddingPrice] = Field(default_factory=dict)
    batch_price_factor: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict,
        description="Per provider, the share of list price a batch request pays where genai-prices has no batch price.",
    )
    families: list[Family] = Field(default_factory=list, description="Profiles of unlisted models; first match wins.")
    default_profile: Profile = Field(
        default_factory=lambda: Profile(ttft_ms=800, output_tokens_per_s=80, quality_tier=2),
        description="The profile of an unlisted model no family matches.",
    )
    _overrides_file: str | None = PrivateAttr(None)
    _memo: dict[Any, Any] = PrivateAttr(default_factory=dict)

    def __getstate__(self) -> dict[Any, Any]:
        # Caches are rebuilt where the catalog lands (a Ray worker): they hold genai-prices objects.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_memo"] = {}
        return {**state, "__pydantic_private__": private}

    # ----------------------------------------------------------------- what callers use
    @property
    def models(self) -> Mapping[str, ModelPrice]:
        """The pricing file's models by name (today's prices); ``catalog.models[name]`` prices any known name."""
        return _Listed(self)

    @property
    def overrides_file(self) -> str | None:
        """The override file layered over the shipped one, if any."""
        return self._overrides_file

    def describe(self) -> dict[str, str | None]:
        """The source of list prices, its version and the override file (an experiment records these)."""
        return {"source": _genai.SOURCE, "version": _genai.version(), "overrides": self._overrides_file}

    def price(
        self, model: str, *, on: dt.date | None = None, provider: str | None = None, param: str = "model"
    ) -> ModelPrice:
        """The prices of ``model`` in force on ``on`` (today when ``None``).

        A ``ConfigError`` names ``param`` and how to add the model when the catalog cannot price it.
        """
        found = self.rates(model, on=on, provider=provider)
        if found is None:
            raise ConfigError(self.unknown(model), param=param)
        return found

    def rates(
        self, model: str, *, on: dt.date | None = None, provider: str | None = None, batch: bool = False
    ) -> ModelPrice | None:
        """The prices of ``model`` in force on ``on`` (today when ``None``), at batch rates if ``batch``.

        ``None`` when the catalog cannot price it.
        """
        key = ("rates", model, provider, on or today(), batch)
        if key not in self._memo:
            self._memo[key] = self._rates(model, provider, on or today(), batch)
        found: ModelPrice | None = self._memo[key]
        return found

    def provider_of(self, model: str) -> str | None:
        """The vendor of ``model`` as the catalog knows it, else ``None``."""
        override, resolved = self._find(model, None)
        if override is not None:
            return self.entries[override].provider
        return resolved.provider if resolved is not None else None

    def changes(self, model: str, *, provider: str | None = None) -> list[dt.date]:
        """Dates on which ``model``'s list prices change (none for an override), ascending."""
        override, resolved = self._find(model, provider)
        return [] if override is not None or resolved is None else _genai.changes(resolved)

    def cost(
        self,
        model: str,
        *,
        on: AsOf | None = None,
        provider: str | None = None,
        output_tokens: pl.Expr | None = None,
        param: str = "model",
    ) -> pl.Expr:
        """Each row's cost at ``model``'s list prices in force on ``on`` (today when ``None``).

        With ``"row"``, at those in force on each row's own date (its ``timestamp``): a price change
        inside the window changes the price from that day on.
        """
        if on != "row":
            return cost_at(self.price(model, on=on, provider=provider, param=param), output_tokens=output_tokens)
        dates = self.changes(model, provider=provider)
        first = self.price(model, on=dates[0] - dt.timedelta(days=1) if dates else None, provider=provider, param=param)
        day = pl.col("timestamp").dt.date()
        cases = [
            (day >= pl.lit(d), cost_at(self.price(model, on=d, provider=provider), output_tokens=output_tokens))
            for d in reversed(dates)
        ]
        return piecewise(cases, cost_at(first, output_tokens=output_tokens))

    def quote(self, model: str, *, on: dt.date | None = None, provider: str | None = None) -> PriceQuote:
        """How ``model`` resolves and its standard and batch rates on ``on`` (today when ``None``)."""
        day = on or today()
        standard = self.price(model, on=day, provider=provider)
        batch = self.rates(model, on=day, provider=provider, batch=True)
        assert batch is not None
        return PriceQuote(
            name=model,
            canonical=standard.canonical,
            provider=standard.provider,
            date=day,
            standard=standard,
            batch=batch,
            changes=self.changes(model, provider=provider),
        )

    def unknown(self, model: str) -> str:
        """Why ``model`` cannot be priced and how to add it."""
        files = f"{SHIPPED.name}" + (f" + {self._overrides_file}" if self._overrides_file else "")
        close = difflib.get_close_matches(model.lower(), self._known_names(), n=3, cutoff=0.75)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        example = f"models: {{{model}: {{provider: openai, input_per_mtok: 0.5, output_per_mtok: 1.5}}}}"
        return (
            f"unknown model {model!r}: neither {_genai.SOURCE} {_genai.version()} nor the pricing file ({files}) "
            f"prices it{hint}; add it to a pricing override file (REHEARSAL_PRICING / --pricing), e.g. `{example}`"
        )

    def listing(self, provider: str | None = None) -> list[tuple[str, ModelPrice]]:
        """Every model the catalog prices today (of one provider when given): overrides, then genai-prices'."""
        day, out = today(), []
        wanted = _genai.provider_id(provider) if provider else None
        for name, entry in self.entries.items():
            if entry.is_override and (provider is None or entry.provider in (provider, wanted)):
                found = self.rates(name, on=day)
                if found is not None:
                    out.append((name, found))
        for provider_id, info in _genai.models(provider):
            resolved = _genai.Resolved(provider_id, info.id, info, True)
            listed = self._listed(info.id, resolved, day, batch=False)
            if listed is not None:
                out.append((info.id, listed))
        return out

    # ----------------------------------------------------------------- resolution
    def _resolve(self, name: str, provider: str | None) -> _genai.Resolved | None:
        key = ("resolve", name, provider)
        if key not in self._memo:
            self._memo[key] = _genai.resolve(name, provider)
        found: _genai.Resolved | None = self._memo[key]
        return found

    def _canonical(self) -> dict[tuple[str, str], list[str]]:
        """The file's entries by the genai-prices model each resolves to (``provider``, ``model id``)."""
        if "canonical" not in self._memo:
            by: dict[tuple[str, str], list[str]] = {}
            for name, entry in self.entries.items():
                resolved = self._resolve(name, entry.provider)
                if resolved is not None:
                    by.setdefault((resolved.provider, resolved.model_id), []).append(name)
            self._memo["canonical"] = by
        found: dict[tuple[str, str], list[str]] = self._memo["canonical"]
        return found

    def _find(self, name: str, provider: str | None) -> tuple[str | None, _genai.Resolved | None]:
        """The override entry that prices ``name`` (if any) and the genai-prices model it resolves to."""
        entry = self.entries.get(name)
        if entry is not None and entry.is_override:
            return name, None
        resolved = self._resolve(name, provider)
        if resolved is None:
            return None, None
        for other in self._canonical().get((resolved.provider, resolved.model_id), []):
            if self.entries[other].is_override:
                return other, resolved
        return None, resolved

    def _names_of(self, name: str, resolved: _genai.Resolved | None) -> list[str]:
        names = [name] if name in self.entries else []
        if resolved is not None:
            names += [n for n in self._canonical().get((resolved.provider, resolved.model_id), []) if n != name]
        return names

    def _known_names(self) -> list[str]:
        if "known" not in self._memo:
            self._memo["known"] = sorted({*self.entries, *(info.id for _, info in _genai.models())})
        found: list[str] = self._memo["known"]
        return found

    # ----------------------------------------------------------------- prices
    def _profile(self, names: list[str], model_id: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name in names:
            entry = self.entries[name]
            for f in PROFILE_FIELDS:
                if fields.get(f) is None and getattr(entry, f) is not None:
                    fields[f] = getattr(entry, f)
        if all(fields.get(f) is not None for f in PROFILE_FIELDS):
            return {**fields, "profile": "listed"}
        family = next((f for f in self.families if re.search(f.match, model_id.lower())), None)
        fallback: Profile = family or self.default_profile
        for f in PROFILE_FIELDS:
            fields.setdefault(f, getattr(fallback, f))
        return {**fields, "profile": f"family {family.name}" if family else "default"}

    def _rates(self, model: str, provider: str | None, day: dt.date, batch: bool) -> ModelPrice | None:
        override, resolved = self._find(model, provider)
        if override is not None:
            return self._override(override, model, resolved, batch)
        if resolved is None:
            return None
        return self._listed(model, resolved, day, batch=batch)

    def _override(self, name: str, model: str, resolved: _genai.Resolved | None, batch: bool) -> ModelPrice:
        entry = self.entries[name]
        assert entry.provider is not None and entry.input_per_mtok is not None and entry.output_per_mtok is not None
        factor = self.batch_price_factor.get(entry.provider, 1.0) if batch else 1.0
        source = f"override {self._overrides_file or SHIPPED.name} ({name})"
        if factor != 1.0:
            source += f", batch at {factor:g} x list ({SHIPPED.name} batch_price_factor)"

        def scaled(value: float | None) -> float | None:
            return None if value is None else value * factor

        return ModelPrice(
            provider=entry.provider,
            input_per_mtok=entry.input_per_mtok * factor,
            output_per_mtok=entry.output_per_mtok * factor,
            cached_input_per_mtok=scaled(entry.cached_input_per_mtok),
            cache_write_per_mtok=scaled(entry.cache_write_per_mtok),
            canonical=resolved.canonical if resolved is not None else None,
            source=source,
            batch=batch,
            **self._profile([name, *self._names_of(model, resolved)], resolved.model_id if resolved else name),
        )

    def _listed(self, model: str, resolved: _genai.Resolved, day: dt.date, *, batch: bool) -> ModelPrice | None:
        prices, from_variant = _genai.token_prices(resolved, day, batch=batch)
        if prices["input_mtok"] is None:
            return None  # not priced per token (images, audio, searches only)
        factor = self.batch_price_factor.get(resolved.provider, 1.0) if batch and not from_variant else 1.0

        def rates(above: int | None = None) -> dict[str, float | None]:
            def one(key: str) -> float | None:
                value = _genai.rate(prices[key], above)
                return None if value is None else value * factor

            return {
                "input_per_mtok": one("input_mtok"),
                "output_per_mtok": one("output_mtok") or 0.0,
                "cached_input_per_mtok": one("cache_read_mtok"),
                "cache_write_per_mtok": one("cache_write_mtok"),
            }

        source = f"{_genai.SOURCE} {_genai.version()}"
        if from_variant:
            source += " batch price"
        elif factor != 1.0:
            source += f", batch at {factor:g} x list ({SHIPPED.name} batch_price_factor)"
        return ModelPrice(
            provider=resolved.provider,
            **rates(),
            tiers=[PriceTier(above_input_tokens=t, **rates(t)) for t in _genai.thresholds(prices)],
            canonical=resolved.canonical,
            source=source,
            batch=batch,
            **self._profile(self._names_of(model, resolved), resolved.model_id),
        )

    # ----------------------------------------------------------------- files
    def layered(self, top: Catalog) -> Catalog:
        """The catalog with ``top`` (an override file) over it: its entries field by field, its families first."""
        entries = dict(self.entries)
        for name, entry in top.entries.items():
            below = entries.get(name)
            merged = {**(below.model_dump(exclude_none=True) if below else {}), **entry.model_dump(exclude_none=True)}
            entries[name] = ModelEntry.model_validate(merged)
        return Catalog(
            entries=entries,
            embeddings={**self.embeddings, **top.embeddings},
            batch_price_factor={**self.batch_price_factor, **top.batch_price_factor},
            families=[*top.families, *self.families],
            default_profile=top.default_profile if "default_profile" in top.model_fields_set else self.default_profile,
        )


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The shipped pricing file, with the file at ``path`` layered over it when that is another file.

    A ``ConfigError`` names the bad entry.
    """
    shipped = load_yaml_model(SHIPPED, Catalog, what="pricing catalog", param="pricing")
    if path is None or Path(path).resolve() == SHIPPED.resolve():
        return shipped
    top = load_yaml_model(path, Catalog, what="pricing catalog", param="pricing")
    catalog = shipped.layered(top)
    catalog._overrides_file = str(path)
    return catalog
