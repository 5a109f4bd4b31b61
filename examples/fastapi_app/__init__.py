"""A FastAPI app in front of Cartesia's realtime STT (see ``app.py`` and docs/fastapi.md).

Run it with ``python -m examples.fastapi_app`` and open http://127.0.0.1:8000.
"""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
