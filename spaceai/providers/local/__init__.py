"""The local models, run inside the gateway: a chat model (SmolLM2-135M-Instruct, GGUF) on
llama.cpp via ``xllamacpp``, and an embedding model (all-MiniLM-L6-v2) on numpy.

* :mod:`.engine` — weight discovery, llama.cpp start-up and shutdown, the thread bridge
* :mod:`.chat` — chat and text completions: request -> engine body, the stream, the answer
* :mod:`.embeddings` — the embedding model and its request batcher
* :mod:`.provider` — :class:`LocalProvider`
"""

from spaceai.providers.local.engine import bundled_model_path
from spaceai.providers.local.provider import LocalProvider

__all__ = ["LocalProvider", "bundled_model_path"]
