"""The model catalogue: every model the loaded providers offer, by ``provider/model`` and alias.

Models come from each provider plugin's ``models`` config (:func:`parse_models`): a bare id, or
a table with its limits, input kinds, prices and aliases. A :class:`Catalog` indexes the models
of one plugin generation; it resolves refs the way OpenClaw does (reference §7):

- ``provider/model`` names that model (provider compared case-insensitively);
- ``provider/<alias>`` and a bare ``<alias>`` name the aliased model;
- a bare model id names it when exactly one provider offers it.

It prices a :class:`~clawgate.providers.base.Usage` and renders the ``models.list`` and
``/v1/models`` rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NotRequired, TypedDict, cast

from clawgate.errors import InvalidRequest
from clawgate.providers.base import Cost, InputKind, ModelCost, ModelInfo, Provider, Usage

INPUT_KINDS: tuple[InputKind, ...] = ("text", "image", "document")
CACHE_LIMIT = 8  # catalogues kept per owner (one per live plugin generation)
_COST_KEYS = ("input", "output", "cache_read", "cache_write")


class ModelRow(TypedDict):
    """One ``models.list`` row (OpenClaw's ModelCatalogEntry plus limits and prices)."""

    id: str
    name: str
    provider: str
    ref: str
    input: list[str]
    reasoning: bool
    contextWindow: NotRequired[int]
    maxTokens: NotRequired[int]
    alias: NotRequired[str]
    aliases: NotRequired[list[str]]
    cost: NotRequired[dict[str, float]]
    api: NotRequired[str]


def parse_models(entries: Iterable[Any], *, provider: str = "") -> list[ModelInfo]:
    """:class:`ModelInfo` for each entry of a provider plugin's ``models`` config.

    An entry is a model id, or a table ``{id, name?, context_window?, max_output_tokens?,
    input? (["text", "image", "document"]), reasoning?, alias? (string or list), api?,
    cost? {input, output, cache_read?, cache_write?} (USD per million tokens)}``.
    """
    where = f"{provider}: " if provider else ""
    models: list[ModelInfo] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            if not entry.strip():
                raise InvalidRequest(f"{where}models[{i}] is an empty id")
            models.append(ModelInfo(entry.strip()))
            continue
        if not isinstance(entry, Mapping) or not str(entry.get("id") or "").strip():
            raise InvalidRequest(f"{where}models[{i}] must be an id or a table with an id")
        models.append(_model(entry, f"{where}models[{i}]"))
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"{where}model ids must be unique, got {ids}")
    return models


def _model(entry: Mapping[str, Any], where: str) -> ModelInfo:
    kinds = tuple(entry.get("input") or ("text",))
    bad = [k for k in kinds if k not in INPUT_KINDS]
    if bad:
        raise InvalidRequest(f"{where}.input: unknown kinds {bad}; use {list(INPUT_KINDS)}")
    alias = entry.get("alias") or ()
    aliases = (alias,) if isinstance(alias, str) else tuple(str(a) for a in alias)
    cost = entry.get("cost")
    price: ModelCost | None = None
    if cost is not None:
        if not isinstance(cost, Mapping) or any(
                not isinstance(cost.get(k, 0), int | float) or cost.get(k, 0) < 0
                for k in _COST_KEYS):
            raise InvalidRequest(f"{where}.cost must hold non-negative prices per million tokens")
        price = ModelCost(*(float(cost.get(k, 0)) for k in _COST_KEYS))
    return ModelInfo(
        id=str(entry["id"]).strip(),
        name=entry.get("name"),
        context_window=_positive(entry.get("context_window"), f"{where}.context_window"),
        max_output_tokens=_positive(entry.get("max_output_tokens"),
                                    f"{where}.max_output_tokens"),
        input=cast("tuple[InputKind, ...]", kinds),
        reasoning=bool(entry.get("reasoning", False)),
        cost=price,
        aliases=tuple(a.strip() for a in aliases if a.strip()),
        api=entry.get("api"),
    )


def _positive(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"{where} must be a positive integer")
    return int(value)


class Catalog:
    """The models of one set of providers, indexed for lookups that are dict reads."""

    def __init__(self, models: Iterable[tuple[str, ModelInfo]]) -> None:
        self._models: dict[tuple[str, str], ModelInfo] = {}
        self._order: list[tuple[str, ModelInfo]] = []
        self._aliases: dict[str, tuple[str, str]] = {}  # "alias" and "provider/alias"
        self._bare: dict[str, list[str]] = {}  # model id -> providers offering it
        for provider, info in models:
            key = (provider.lower(), info.id)
            if key in self._models:
                continue
            self._models[key] = info
            self._order.append((key[0], info))
            self._bare.setdefault(info.id, []).append(key[0])
            for alias in info.aliases:
                # The first provider to claim a bare alias keeps it (precedence order).
                self._aliases.setdefault(alias.lower(), key)
                self._aliases.setdefault(f"{key[0]}/{alias.lower()}", key)

    @classmethod
    def of(cls, providers: Iterable[Provider]) -> Catalog:
        """The catalogue of ``providers`` (their ``models()``), in the order given."""
        return cls((p.id, info) for p in providers for info in p.models())

    def __len__(self) -> int:
        return len(self._order)

    def get(self, provider: str, model: str) -> ModelInfo | None:
        """The entry of ``provider/model`` (no alias resolution)."""
        return self._models.get((provider.lower(), model))

    def resolve(self, provider: str, model: str) -> tuple[str, str] | None:
        """(provider, model id) for a ref; ``provider`` may be empty (a bare id or alias).
        None when the catalogue does not know the ref (a provider may still serve it)."""
        p = provider.lower()
        if p:
            if (p, model) in self._models:
                return p, model
            return self._aliases.get(f"{p}/{model.lower()}")
        aliased = self._aliases.get(model.lower())
        if aliased is not None:
            return aliased
        offering = self._bare.get(model, [])
        return (offering[0], model) if len(offering) == 1 else None

    def cost(self, provider: str, model: str, usage: Usage) -> Cost | None:
        """What ``usage`` cost on ``provider/model``; None when the model has no prices."""
        info = self._models.get((provider.lower(), model))
        return None if info is None or info.cost is None else info.cost.of(usage)

    def rows(self) -> list[ModelRow]:
        """``models.list`` rows, sorted by provider then id."""
        return sorted((_row(p, m) for p, m in self._order), key=lambda r: (r["provider"], r["id"]))

    def openai_rows(self, created: int) -> list[dict[str, Any]]:
        """``/v1/models`` rows (``{"id": "provider/model", "object": "model", ...}``)."""
        return [{"id": f"{p}/{m.id}", "object": "model", "created": created, "owned_by": p}
                for p, m in sorted(self._order, key=lambda pm: (pm[0], pm[1].id))]


def _row(provider: str, info: ModelInfo) -> ModelRow:
    row = ModelRow(id=info.id, name=info.name or info.id, provider=provider,
                   ref=f"{provider}/{info.id}", input=list(info.input), reasoning=info.reasoning)
    if info.context_window is not None:
        row["contextWindow"] = info.context_window
    if info.max_output_tokens is not None:
        row["maxTokens"] = info.max_output_tokens
    if info.aliases:
        row["alias"] = info.aliases[0]
        row["aliases"] = list(info.aliases)
    if info.cost is not None:
        row["cost"] = {"input": info.cost.input, "output": info.cost.output,
                       "cacheRead": info.cost.cache_read, "cacheWrite": info.cost.cache_write}
    if info.api:
        row["api"] = info.api
    return row


class CatalogCache:
    """Catalogues by owner object (a plugin generation's registry), the newest few kept.

    The owner is held so its identity cannot be reused while its entry lives.
    """

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self._limit = max(1, limit)
        self._entries: OrderedDict[int, tuple[object, Catalog]] = OrderedDict()

    def get(self, owner: object, providers: Sequence[Provider]) -> Catalog:
        """The catalogue of ``providers`` for ``owner``, built on first use."""
        key = id(owner)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is owner:
            self._entries.move_to_end(key)
            return hit[1]
        catalog = Catalog.of(providers)
        self._entries[key] = (owner, catalog)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        return catalog
