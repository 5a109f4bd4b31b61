"""How to install an extra: the one home of the hint every "needs package X" message gives.

The package is not on PyPI yet, so ``pip install 'cartesia-stt-async[twin]'`` would fail: the
hint names what works, a checkout of the repository or a wheel built from one.
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """How to install ``extra``, for a message: ``pip install -e '.[twin]'`` in a checkout,
    or the wheel with the extra."""
    wheel = f"cartesia_stt_async-{__version__}-py3-none-any.whl"
    return (
        f"pip install -e '.[{extra}]' in a checkout of cartesia-stt-async "
        f"(or pip install '{wheel}[{extra}]')"
    )
