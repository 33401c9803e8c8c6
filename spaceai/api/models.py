"""GET /v1/models and GET /v1/models/{id}, in the seed's shape."""

from __future__ import annotations

from spaceai.api.http import Request, Response, json_response
from spaceai.auth import request_token
from spaceai.gateway import Gateway
from spaceai.types import GatewayError


async def list_models(gw: Gateway, request: Request) -> Response:
    key = await gw.key_cache.authenticate(request_token(request))
    data = [m.to_openai() for m in gw.catalog if key.models is None or m.id in key.models]
    return json_response(200, {"object": "list", "data": data})


async def get_model(gw: Gateway, request: Request) -> Response:
    key = await gw.key_cache.authenticate(request_token(request))
    model_id = request.path_params["id"]
    model = gw.catalog.get(model_id)
    if model is None or (key.models is not None and model_id not in key.models):
        raise GatewayError(404, f"The model `{model_id}` does not exist or you do not have access "
                           "to it.", param="model", code="model_not_found")
    return json_response(200, model.to_openai())
