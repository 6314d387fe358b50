"""``/v1/providers``: upstream provider credentials."""

from __future__ import annotations

import re
from typing import Annotated

from litestar import Controller, delete, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath

from llmgw_keys.controllers.common import E401, E403, E404, E409, E422, PrincipalDep, RuntimeDep
from llmgw_keys.errors import Invalid, NotFound
from llmgw_keys.schemas import ProviderList, ProviderOut, ProviderPut
from llmgw_keys.services import providers as service

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_PROVIDER = {
    "name": "openai",
    "kind": "openai",
    "base_url": "https://api.openai.com/v1",
    "api_key": "sk-...abcd",
    "source": "database",
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:00:00Z",
}


def _ok(container, value, description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=container,
        description=description,
        generate_examples=False,
        examples=[Example(summary="example", value=value)],
    )


class ProvidersController(Controller):
    path = "/v1/providers"
    tags = ["providers"]

    @get(
        "/",
        summary="List providers",
        description=(
            "Every provider: database rows and the implicit ones configured through the environment "
            "(`openai` from LLMGW_OPENAI_*, `anthropic` from LLMGW_ANTHROPIC_*; `source: environment`). "
            "A database row of the same name overrides an environment provider. API keys are masked."
        ),
        responses={200: _ok(ProviderList, {"data": [_PROVIDER]}, "The providers"), **E401, **E403},
    )
    async def list_providers(self, runtime: RuntimeDep) -> ProviderList:
        return await service.list_providers(runtime)

    @get(
        "/{name:str}",
        summary="Get a provider",
        description="One provider by name; the API key is masked (`sk-...abcd`).",
        responses={200: _ok(ProviderOut, _PROVIDER, "The provider"), **E401, **E403, **E404},
    )
    async def get_provider(self, runtime: RuntimeDep, name: FromPath[str]) -> ProviderOut:
        if not NAME_RE.match(name):
            raise NotFound("provider not found")
        return await service.get_provider(runtime, name)

    @put(
        "/{name:str}",
        summary="Create or replace a provider",
        description=(
            "Creates or replaces the provider `name` (letters, digits, `_`, `-`). `kind`: `openai`, "
            "`anthropic` or `openai-compatible` (vLLM, Ollama, Azure-style endpoints). `base_url` with `/v1` "
            "for openai kinds, without for anthropic. `api_key` is encrypted at rest (Fernet); omit it to keep "
            'the stored one, send `""` to clear it. Publishes `KeyChanged(providers)` (proxies drop everything).'
        ),
        responses={200: _ok(ProviderOut, _PROVIDER, "The stored provider"), **E401, **E403, **E422},
    )
    async def put_provider(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        name: FromPath[str],
        data: Annotated[
            ProviderPut,
            Body(
                title="Provider",
                examples=[
                    Example(
                        summary="OpenAI",
                        value={"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "sk-proj-..."},
                    ),
                    Example(
                        summary="Anthropic",
                        value={"kind": "anthropic", "base_url": "https://api.anthropic.com", "api_key": "sk-ant-..."},
                    ),
                    Example(
                        summary="local vLLM",
                        value={"kind": "openai-compatible", "base_url": "http://vllm.internal:8000/v1"},
                    ),
                ],
            ),
        ],
    ) -> ProviderOut:
        if not NAME_RE.match(name):
            raise Invalid("name: 1-64 letters, digits, '_' or '-'")
        return await service.put_provider(runtime, principal, name, data)

    @delete(
        "/{name:str}",
        status_code=204,
        summary="Delete a provider",
        description=(
            "Deletes a database provider. 409 when configured routes still use it, or when it exists only "
            "through the environment (unset the variables instead). Deleting a row that overrode an "
            "environment provider brings the environment one back."
        ),
        responses={**E401, **E403, **E404, **E409},
    )
    async def delete_provider(self, runtime: RuntimeDep, principal: PrincipalDep, name: FromPath[str]) -> None:
        if not NAME_RE.match(name):
            raise NotFound("provider not found")
        await service.delete_provider(runtime, principal, name)
