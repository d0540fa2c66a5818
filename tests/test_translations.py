"""Every user-facing string has its 简体中文 translation, compiled."""

import re
from pathlib import Path

PO = Path(__file__).resolve().parent.parent / "locale/zh_Hans/LC_MESSAGES/django.po"


def _entries() -> list[str]:
    return [block for block in PO.read_text(encoding="utf-8").split("\n\n") if "msgid" in block]


def test_no_string_is_left_untranslated_or_fuzzy():
    missing = []
    for block in _entries()[1:]:  # the first is the header
        empty = re.search(r'^msgstr(\[0\])? ""$', block, re.M)
        continued = re.search(r'^msgstr(\[0\])? ""\n"', block, re.M)
        if "#, fuzzy" in block or (empty and not continued):
            missing.append(block)
    assert missing == []


def test_the_compiled_catalogue_holds_the_translations():
    mo = PO.with_suffix(".mo")
    assert mo.exists() and mo.stat().st_size > 1000
    import gettext

    catalog = gettext.GNUTranslations(mo.open("rb"))
    assert catalog.gettext("Starts now.") == "立即开始。"
    assert catalog.gettext("LLM fine-tuning") == "大模型精调"
