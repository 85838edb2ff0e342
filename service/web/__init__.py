"""The dashboard: server-rendered pages under ``/`` over the shared service layer, signed in with a management key.

``router`` serves the pages; ``STATIC_DIR`` holds the one stylesheet and script they load (mount it at ``/static``).
"""

from service.web._pages import STATIC_DIR, router

__all__ = ["STATIC_DIR", "router"]
