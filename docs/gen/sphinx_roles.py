"""A griffe extension for the docs site: Sphinx-style roles in docstrings become code spans.

The package's docstrings are Google style (Args/Returns/Raises), read by mkdocstrings, but some
name other objects the Sphinx way (``:class:`~cartesia_stt_async.AsyncConnection```,
``:meth:`finalize```) and introduce literal blocks with ``::``. Markdown knows neither: this
extension rewrites them once the package is loaded, so the API reference shows ``AsyncConnection``
as code instead of the raw role. Loaded by ``mkdocs.yml`` (mkdocstrings' ``extensions`` option);
not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Alias, Extension, Module, Object

# :class:`~a.b.C`, :meth:`text <a.b.C.m>`, :func:`f`, :mod:`m`, ...
_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|exc|obj|const):`([^`]+)`")
_LABELLED = re.compile(r"^(.*?)\s*<[^>]+>$")
# Citations of the maintainers' internal wire notes (that file's name, a section sign, a number):
# users do not have that file, and the site's own page is docs/protocol.md. Dropped from the
# rendered text (the docstrings should lose them; then this is a no-op).
_INTERNAL_REF = re.compile(r" ?\(protocol\.md §[^)]*\)|protocol\.md §[\d.]+(?:, §[\d.]+)*")


def _name(target: str) -> str:
    labelled = _LABELLED.match(target)
    if labelled:
        return labelled.group(1)
    if target.startswith("~"):
        return target[1:].rsplit(".", 1)[-1]
    return target


def rewrite(text: str) -> str:
    """Sphinx roles to code spans, ``text::`` to ``text:``, internal protocol notes dropped."""
    text = _ROLE.sub(lambda m: f"`{_name(m.group(1))}`", text)
    text = _INTERNAL_REF.sub("", text)
    return re.sub(r"(\S)::\n", r"\1:\n", text)


class SphinxRoles(Extension):
    """Rewrite every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value)
            for member in obj.members.values():
                if not isinstance(member, Alias):
                    stack.append(member)
