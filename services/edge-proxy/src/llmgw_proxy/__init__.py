"""llmgw edge proxy: the OpenAI/Anthropic-compatible endpoint clients call with virtual keys.

The hot path (``/v1/*``) is plain ASGI routed by :mod:`llmgw_proxy.router` in front of Litestar's
router; Litestar serves the operational endpoints and owns the lifespan. See docs/edge-proxy.md.
"""
