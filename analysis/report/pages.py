"""What every gradprobe page shares: the Jinja2 environment, the inline style and script, a
Content-Security-Policy, and data URIs for downloads.

Pages are single files that work offline (``file://``, GitHub Pages, ``python -m
http.server``), so styles and scripts are inline and downloads are ``data:`` URIs. The CSP
in every page forbids any network request (``default-src 'none'``; images only from
``data:``) and allows exactly one script, named by its SHA-256 hash: if a config string ever
escaped Jinja2's autoescaping as a ``<script>``, the browser would still refuse to run it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class PageAssets:
    """The inline ``<style>`` and ``<script>`` bodies and the CSP that admits them."""

    style: Markup
    script: Markup
    csp: str


@cache
def environment() -> jinja2.Environment:
    """Autoescaping on for every template; an undefined name is an error, not ''."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


@cache
def page_assets(scripts: tuple[str, ...] = ("tables.js",)) -> PageAssets:
    """The style, and the ``scripts`` (template files) joined into the one inline script
    the CSP admits."""
    style = (TEMPLATES / "page.css").read_text(encoding="utf-8")
    script = "\n".join((TEMPLATES / name).read_text(encoding="utf-8") for name in scripts)
    if "</" in script:  # would end the <script> element early
        raise ValueError(f"{', '.join(scripts)} must not contain '</'")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")
    return PageAssets(Markup(style), Markup(script), csp)


def render_page(template: str, *, scripts: tuple[str, ...] = ("tables.js",),
                **context) -> str:
    """Render ``templates/<template>`` with the shared ``assets`` (style, ``scripts``, CSP)
    in its context."""
    return environment().get_template(template).render(assets=page_assets(scripts),
                                                        **context)


def json_script(data: Any) -> Markup:
    """``data`` as JSON for a ``<script type="application/json">`` element: every ``<``,
    ``>`` and ``&`` escaped so that no string in it can end the element (the browser never
    runs it; the page script parses it)."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


def sort_value(value: Any) -> str:
    """A table cell's ``data-sort`` attribute: numbers at full precision (NaN as ``nan``,
    which the page script sorts last, like an empty value), anything else as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return repr(float(value)) if isinstance(value, numbers.Real) else str(value)


# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection",
# OWASP): config names and parameter names are user text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that a spreadsheet would read as a formula prefixed
    with ``'`` (OWASP's advice); numbers, including negative ones, are untouched."""
    def defuse(value: Any) -> Any:
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) \
            else value

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(defuse)
    return out


def csv_data_uri(frame: pd.DataFrame) -> str:
    """``frame`` as a ``data:text/csv`` URI (UTF-8, base64: no escaping pitfalls in an
    attribute), full float precision, no index, text cells :func:`csv_safe`."""
    text = csv_safe(frame).to_csv(index=False, lineterminator="\n")
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"data:text/csv;charset=utf-8;base64,{encoded}"
