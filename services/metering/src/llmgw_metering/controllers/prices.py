"""Admin price overrides: ``GET/PUT/DELETE /v1/prices/overrides[/{model}]`` (+ a price quote for readers)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from litestar import Controller, Response, delete, get, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from llmgw_metering.auth import require_admin, require_reader
from llmgw_metering.controllers.examples import AUTH_ERRORS, INVALID, OVERRIDE_EXAMPLE, error_spec
from llmgw_metering.errors import ApiError, invalid
from llmgw_metering.schemas import PriceOverrideIn, PriceOverrideList, PriceOverrideOut, PriceQuote, json_response
from llmgw_metering.services import overrides as repo
from llmgw_metering.services.usage_query import iso

MAX_PATTERN = 200
NOT_FOUND = {404: error_spec("No such override", "not_found_error", "no price override for 'gpt-4o*'")}


def _model(model: str) -> str:
    model = model.lstrip("/")
    if not model or len(model) > MAX_PATTERN or "\x00" in model:
        raise invalid(f"model pattern must be 1..{MAX_PATTERN} characters, without NUL")
    return model


def _provider(provider: str | None) -> str | None:
    provider = (provider or "").strip() or None
    if provider is not None and (len(provider) > MAX_PATTERN or "\x00" in provider):
        raise invalid(f"provider must be 1..{MAX_PATTERN} characters, without NUL")
    return provider


def _price(name: str, value: Decimal | None, required: bool) -> Decimal | None:
    if value is None:
        if required:
            raise invalid(f"'{name}' is required")
        return None
    try:
        if not value.is_finite() or value < 0:
            raise invalid(f"'{name}' must be a finite number >= 0")
    except InvalidOperation:
        raise invalid(f"'{name}' must be a number") from None
    return value


def _out(record: repo.OverrideRecord) -> dict:
    data = record.to_json()
    data["created_at"] = iso(record.created_at)
    data["updated_at"] = iso(record.updated_at)
    return data


class PriceOverrideController(Controller):
    path = "/v1/prices/overrides"
    guards = [require_admin]
    tags = ["prices"]

    @get(
        "/",
        summary="List price overrides",
        responses={
            200: ResponseSpec(
                data_container=PriceOverrideList,
                description="All overrides",
                generate_examples=False,
                examples=[Example(value={"data": [OVERRIDE_EXAMPLE]})],
            ),
            **AUTH_ERRORS,
        },
    )
    async def list_overrides(self, state: State) -> Response:
        records = await repo.list_overrides(state.engine)
        return json_response({"data": [_out(r) for r in records]})

    @get(
        "/{model:path}",
        summary="One price override",
        responses={
            200: ResponseSpec(
                data_container=PriceOverrideOut, generate_examples=False, examples=[Example(value=OVERRIDE_EXAMPLE)]
            ),
            **NOT_FOUND,
            **AUTH_ERRORS,
        },
    )
    async def get_override(
        self,
        state: State,
        model: FromPath[str],
        provider: Annotated[str | None, QueryParameter(description="provider scope")] = None,
    ) -> Response:
        model = _model(model)
        provider = _provider(provider)
        record = await repo.get_override(state.engine, model, provider)
        if record is None:
            raise ApiError(
                404, f"no price override for {model!r}" + (f" and provider {provider!r}" if provider else "")
            )
        return json_response(_out(record))

    @put(
        "/{model:path}",
        summary="Create or replace a price override",
        description=(
            "`model` is a glob on the model name (`gpt-4o*`, `llama-3-*`), matched against the upstream and the "
            "public model name. Prices in USD per million tokens; cached-input and cache-write default to the "
            "input price. Applies to events ingested from the next overrides refresh on (≤ 5 s); stored events "
            "keep the price they were ingested with (`price_version`)."
        ),
        responses={
            200: ResponseSpec(
                data_container=PriceOverrideOut,
                description="Replaced (201 when created)",
                generate_examples=False,
                examples=[Example(value=OVERRIDE_EXAMPLE)],
            ),
            **INVALID,
            **AUTH_ERRORS,
        },
    )
    async def put_override(self, state: State, model: FromPath[str], data: JSONBody[PriceOverrideIn]) -> Response:
        model = _model(model)
        provider = _provider(data.provider)
        if "\x00" in data.note:
            raise invalid("'note' must not contain NUL characters")
        record, created = await repo.upsert_override(
            state.engine,
            model=model,
            provider=provider,
            input_usd_per_mtok=_price("input_usd_per_mtok", data.input_usd_per_mtok, True),
            output_usd_per_mtok=_price("output_usd_per_mtok", data.output_usd_per_mtok, True),
            cached_input_usd_per_mtok=_price("cached_input_usd_per_mtok", data.cached_input_usd_per_mtok, False),
            cache_write_usd_per_mtok=_price("cache_write_usd_per_mtok", data.cache_write_usd_per_mtok, False),
            note=data.note[:1000],
        )
        state.overrides.invalidate()
        return json_response(_out(record), status_code=201 if created else 200)

    @delete(
        "/{model:path}",
        summary="Delete a price override",
        responses={**NOT_FOUND, **AUTH_ERRORS},
        status_code=204,
    )
    async def delete_override(
        self,
        state: State,
        model: FromPath[str],
        provider: Annotated[str | None, QueryParameter(description="provider scope")] = None,
    ) -> None:
        model = _model(model)
        provider = _provider(provider)
        if not await repo.delete_override(state.engine, model, provider):
            raise ApiError(404, f"no price override for {model!r}")
        state.overrides.invalidate()


class PriceQuoteController(Controller):
    path = "/v1/prices/quote"
    guards = [require_reader]
    tags = ["prices"]

    @get(
        "/",
        summary="What a request would cost now (overrides included)",
        responses={
            200: ResponseSpec(
                data_container=PriceQuote,
                generate_examples=False,
                examples=[
                    Example(
                        value={
                            "provider": "openai",
                            "model": "gpt-4o",
                            "cost_usd": 0.00575,
                            "known": True,
                            "price_version": "genai-prices-0.2.3",
                        }
                    )
                ],
            ),
            **INVALID,
            **AUTH_ERRORS,
        },
    )
    async def quote(
        self,
        state: State,
        provider: FromQuery[str],
        model: FromQuery[str],
        prompt_tokens: Annotated[int, QueryParameter(ge=0)] = 0,
        cached_tokens: Annotated[int, QueryParameter(ge=0)] = 0,
        cache_write_tokens: Annotated[int, QueryParameter(ge=0)] = 0,
        completion_tokens: Annotated[int, QueryParameter(ge=0)] = 0,
    ) -> Response:
        provider = _provider(provider) or ""
        model = _model(model)
        await state.overrides.refresh_if_due()
        price = state.overrides.pricer.price(
            provider,
            model,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached_tokens,
            cache_write_tokens=cache_write_tokens,
            completion_tokens=completion_tokens,
        )
        return json_response(
            {
                "provider": provider,
                "model": model,
                "cost_usd": price.cost_usd,
                "known": price.known,
                "price_version": price.price_version,
            }
        )
