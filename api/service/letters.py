"""Letters to wearers, from Jinja2 templates, in the wearer's recorded
language where a template in that language exists, English otherwise.

A wearer who does not read English is not warned by an English letter; but
a Hub cannot wait for a release to add a language. So templates are looked
up in two places, the home first: ``HOME/letters`` (the Hub's own
translations, reviewed by its translators) and the package's
``templates/letters`` (English, and whatever ships). For template ``name``
and language ``pt-BR`` the names tried are ``pt-BR/name.txt``,
``pt/name.txt``, then ``name.txt`` (English), each in the home before the
package. The letter records which language it was written in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, TemplatesNotFound
from sqlalchemy.orm import Session

from api.db.models import Wearer

__all__ = ["PACKAGE_LETTERS", "LANGUAGE_TAG", "Letter", "render_letter", "wearer_language", "letter_dirs"]

#: The letters that ship with tagtrail (English).
PACKAGE_LETTERS = Path(__file__).resolve().parent / "templates" / "letters"
#: A BCP 47 language tag as far as letters need one: a primary language and optional subtags (``cy``,
#: ``pt-BR``, ``zh-Hant``); no path separators can get through it.
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")


@dataclass(frozen=True)
class Letter:
    text: str
    language: str  # the tag of the template used; "en" for the English fallback
    template: str  # the name the template was found under, e.g. "cy/warning_letter_1.txt"


def letter_dirs(home: Path | None) -> list[Path]:
    """Where templates are looked for, first match wins."""
    return ([Path(home) / "letters"] if home is not None else []) + [PACKAGE_LETTERS]


def _candidates(name: str, language: str | None) -> list[str]:
    tags = []
    if language and LANGUAGE_TAG.match(language):
        tags = [language] + ([language.split("-")[0]] if "-" in language else [])
    return [f"{t}/{name}.txt" for t in tags] + [f"{name}.txt"]


def render_letter(home: Path | None, name: str, language: str | None, **context: object) -> Letter | None:
    """The letter from template `name` in `language` (or English), rendered with `context`; None when no
    template of that name exists at all (a step with no letter, such as a referral)."""
    env = Environment(loader=FileSystemLoader([str(d) for d in letter_dirs(home)]), autoescape=False,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    names = _candidates(name, language)
    try:
        template = env.select_template(names)
    except TemplatesNotFound:
        return None
    found = template.name or names[-1]
    used = found.split("/")[0] if "/" in found else "en"
    return Letter(text=template.render(**context), language=used, template=found)


def wearer_language(session: Session, subject_id: str) -> str | None:
    """The wearer's recorded language tag, or None (not recorded: English)."""
    row = session.get(Wearer, subject_id)
    return row.language if row is not None else None
