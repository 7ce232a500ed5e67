"""Under the CSP (no inline scripts) inline event handlers never run: a confirm in `onsubmit` would
silently let a deploy or a delete through. Pages ask with data-confirm (static/js/pictor.js)."""

import re

from conftest import REPO


def test_it_has_no_inline_event_handlers_or_scripts_in_templates():
    offenders = []
    for path in (REPO / "templates").rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"\son[a-z]+\s*=|<script(?![^>]*\bsrc=)[^>]*>", text):
            offenders.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
    assert not offenders, offenders


def test_it_asks_before_submitting_a_form_with_data_confirm():
    js = (REPO / "static" / "js" / "pictor.js").read_text()
    assert "data-confirm" in js and "preventDefault" in js
