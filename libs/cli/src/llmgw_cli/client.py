"""A small synchronous HTTP client for the admin REST APIs (key-service, metering)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from llmgw_cli import __version__
from llmgw_cli.errors import ApiError, CliError, ServiceUnreachable

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass(frozen=True)
class ServiceInfo:
    name: str  #: "key-service" or "metering"
    env_var: str  #: the environment variable that sets its URL
    flag: str  #: the command-line flag that sets its URL


KEY_SERVICE = ServiceInfo("key-service", "LLMGW_KEY_SERVICE_URL", "--key-service-url")
METERING = ServiceInfo("metering", "LLMGW_METERING_URL", "--metering-url")


class ApiClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        service: ServiceInfo,
        *,
        token_source: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    ):
        self.base_url = base_url.rstrip("/")
        self.service = service
        self._token = token
        self._token_source = token_source
        self._timeout = timeout
        self._client: httpx.Client | None = None

    def _headers(self) -> dict[str, str]:
        if not self._token:
            raise CliError(
                "no admin token: pass --token, set LLMGW_ADMIN_TOKEN, put admin_token in "
                "~/.config/llmgw/config.toml, or run `make run` (it writes .llmgw/admin_token)",
                exit_code=2,
            )
        return {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": f"llmgw-cli/{__version__}",
        }

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        raw: bool = False,
    ) -> Any:
        """The decoded JSON answer (None for 204), or the body text when ``raw``."""
        headers = self._headers()
        clean_params = {k: _param(v) for k, v in (params or {}).items() if v is not None and v != [] and v != ""}
        url = self.base_url + path
        try:
            response = self._http().request(method, url, params=clean_params, json=json, headers=headers)
        except httpx.InvalidURL as exc:
            raise CliError(f"invalid {self.service.name} URL {self.base_url!r}: {exc}", exit_code=2) from None
        except httpx.UnsupportedProtocol:
            raise CliError(
                f"invalid {self.service.name} URL {self.base_url!r}: it must start with http:// or https://",
                exit_code=2,
            ) from None
        except httpx.TimeoutException:
            raise ServiceUnreachable(
                f"{self.service.name} at {self.base_url} did not answer in time",
                hint=self._unreachable_hint(),
            ) from None
        except httpx.TransportError as exc:
            reason = _reason(exc)
            raise ServiceUnreachable(
                f"cannot reach {self.service.name} at {self.base_url}" + (f" ({reason})" if reason else ""),
                hint=self._unreachable_hint(),
            ) from None
        if response.status_code >= 400:
            raise self._api_error(response)
        if raw:
            return response.text
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{self.service.name} at {self.base_url} answered {method} {path} with a body that is not JSON "
                f"(is {self.service.env_var} pointing at the right service?)"
            ) from None

    def _http(self) -> httpx.Client:
        if self._client is None:
            # Plain-http URLs never use TLS (redirects are not followed): skip loading the CA bundle,
            # which costs a noticeable part of a CLI call's run time.
            plain = self.base_url.lower().startswith("http://")
            self._client = httpx.Client(timeout=self._timeout, follow_redirects=False, verify=not plain)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def paginate(self, path: str, params: dict[str, Any], follow: bool) -> tuple[list[dict], Any]:
        """``{"data": [...], "next_cursor": …}`` pages: one page, or all of them when ``follow``."""
        items: list[dict] = []
        params = dict(params)
        seen: set[str] = set()
        while True:
            page = self.get(path, params=params)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise CliError(f"{self.service.name} answered GET {path} with an unexpected shape (no data list)")
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not follow or not cursor or str(cursor) in seen:
                return items, cursor if not follow else None
            seen.add(str(cursor))
            params["cursor"] = cursor

    # --- messages ---------------------------------------------------------------------------
    def _unreachable_hint(self) -> str:
        return (
            f"Is {self.service.name} running? Start the local stack with `make run`, "
            f"or point {self.service.env_var} (or {self.service.flag}) at it."
        )

    def _api_error(self, response: httpx.Response) -> ApiError:
        error_type: str | None = None
        message: str | None = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                error_type = _str_or_none(error.get("type"))
                message = _str_or_none(error.get("message"))
            elif isinstance(error, str):
                message = error
            if message is None and isinstance(body.get("detail"), str):  # Litestar's default shape
                message = body["detail"]
        if message is None:
            text = response.text.strip().replace("\n", " ")
            message = text[:200] if text else response.reason_phrase or "error"
        if self._token:
            message = message.replace(self._token, "***")
        hint = None
        if response.status_code == 401:
            source = f" (the token came from {self._token_source})" if self._token_source else ""
            hint = f"Check the admin token{source}: --token, LLMGW_ADMIN_TOKEN or the config file."
        elif response.status_code == 403:
            hint = "This token's role may not do this (analyst tokens can only read usage)."
        return ApiError(response.status_code, error_type, message, hint=hint)


def _param(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "host not found"
    if "reset" in text:
        return "connection reset"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
