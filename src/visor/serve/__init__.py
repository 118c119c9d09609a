"""The visor service: REST API, Cloud Vision-compatible endpoint, review queue and web UI.

Needs the ``serve`` extra (``pip install 'visor-vision[serve]'``). Build an app with
:func:`visor.serve.app.create_app`; run one with ``visor serve``.
"""

from visor.serve.settings import ServeSettings

__all__ = ["ServeSettings"]
