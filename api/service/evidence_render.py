"""An evidence pack (`api.service.evidence_pack.EvidencePack`) as a document:
HTML (one self-contained file, pictures inline, no script, printable) or
PDF.

The PDF is ReportLab's: a pure-Python wheel from the Python index, so the
pack needs no system libraries (WeasyPrint would need Pango and friends from
the distribution on every machine that serves the API), and its
``invariant`` mode writes no creation date or random document id, so the
same pack gives the same bytes; the generation time is printed on the page
instead, which is the only difference between two generations.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.service.evidence_pack import EvidencePack
from api.service.london import london_time
from trails.timestamps import format_ms

__all__ = ["pack_html", "pack_pdf", "period_html", "period_pdf", "PeriodCover", "TEMPLATES"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def _generated(pack) -> str:
    return f"{london_time(pack.generated_ms).text} ({format_ms(pack.generated_ms)})"


@dataclass(frozen=True)
class PeriodCover:
    """The first page of a wearer-period pack: whose, which period, which records and how each stands."""

    subject_id: str
    period: str  # "from ... to ..." in London time with UTC
    records: list[tuple[str, str, str, str]]  # (breach id, type, start in words, how it stands)
    data_sha256: str
    software: str
    generated_ms: int


def _images(pack: EvidencePack) -> dict[str, str]:
    return {"map_src": "data:image/png;base64," + base64.b64encode(pack.map_png).decode(),
            "timeline_src": "data:image/png;base64," + base64.b64encode(pack.timeline_png).decode()}


def pack_html(pack: EvidencePack) -> bytes:
    """The pack as one HTML file (UTF-8)."""
    html = _environment().get_template("evidence_pack.html").render(p=pack, generated=_generated(pack),
                                                                     **_images(pack))
    return html.encode("utf-8")


def period_html(cover: PeriodCover, packs: list[EvidencePack]) -> bytes:
    """The wearer-period pack as one HTML file: the cover, then each record's pack."""
    html = _environment().get_template("evidence_period.html").render(
        c=cover, generated=_generated(cover), sections=[(p, _images(p)) for p in packs])
    return html.encode("utf-8")


def _kv_table(rows: list[tuple[str, str]], styles):
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    t = Table([[Paragraph(f"<b>{k}</b>", styles["BodyText"]), Paragraph(_esc(v), styles["BodyText"])]
               for k, v in rows], colWidths=[120, 360])
    t.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return t


def _esc(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fix_table(pack: EvidencePack, styles):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    head = ["#", "Time (UK)", "UTC", "For the zone", "Lat", "Lon", "Accuracy", "Battery"]
    rows = [head] + [[f["n"], f["time"], f["utc"], f["state"], f["lat"], f["lon"], f["accuracy"], f["battery"]]
                     for f in pack.fixes]
    t = Table(rows, repeatRows=1, colWidths=[22, 100, 120, 62, 50, 54, 48, 40])
    t.setStyle(TableStyle([("FONTSIZE", (0, 0), (-1, -1), 6.5), ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                           ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                           ("LINEBELOW", (0, 1), (-1, -1), 0.1, colors.lightgrey)]))
    return t


def _story(pack: EvidencePack, styles) -> list:
    from reportlab.platypus import Image, KeepTogether, Paragraph, Spacer

    r, t = pack.record, pack.times
    story = [Paragraph(f"Evidence pack: {_esc(r['kind'])} {_esc(r['breach_id'])}", styles["Title"]),
             Paragraph(f"{_esc(r['type'])}, wearer {_esc(r['subject_id'])}, device {_esc(r['device_id'])}",
                       styles["Heading2"]),
             Paragraph("The record in words", styles["Heading2"])]
    story += [Paragraph(_esc(line), styles["BodyText"]) for line in pack.rule]
    story.append(_kv_table([("Start", f"{t['start']} ({t['start_utc']})"), ("End", f"{t['end']} ({t['end_utc']})"),
                            ("Duration", t["duration"]), ("Priority", pack.priority),
                            ("Zone", "none" if pack.zone is None else
                             f"{pack.zone['id']}: {pack.zone['kind_text']}, {pack.zone['shape']}"),
                            ("Schedule", "" if pack.zone is None else "; ".join(pack.zone["schedule"]))], styles))
    story += [Paragraph("Map of the fixes in the record's window", styles["Heading2"]),
              Paragraph(f"Fixes from {_esc(t['window'])}: the record's own time plus the policy's coverage either "
                        "side, nothing wider.", styles["BodyText"]),
              Image(io.BytesIO(pack.map_png), width=440, height=314),
              KeepTogether([Paragraph("Timeline", styles["Heading2"]),
                            Image(io.BytesIO(pack.timeline_png), width=440, height=163)]),
              Paragraph("Data quality", styles["Heading2"])]
    story += [Paragraph(_esc(line), styles["BodyText"]) for line in pack.quality]
    story += [Paragraph("Provenance", styles["Heading2"]),
              _kv_table([("Software", pack.software), ("Policy SHA-256", pack.policy_sha256),
                         ("Data SHA-256", pack.data_sha256), ("Generated", _generated(pack))], styles),
              Spacer(1, 8), Paragraph("The fixes", styles["Heading2"]), _fix_table(pack, styles)]
    return story


def _pdf(title: str, software: str, data_sha256: str, story_of) -> bytes:
    """A4, ReportLab's invariant mode (no creation date, no random id): the same story, the same bytes."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import SimpleDocTemplate

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, invariant=1, title=title, author="tagtrail", creator=software,
                            subject=f"data SHA-256 {data_sha256}", leftMargin=50, rightMargin=50, topMargin=50,
                            bottomMargin=50)
    doc.build(story_of(getSampleStyleSheet()))
    return buf.getvalue()


def pack_pdf(pack: EvidencePack) -> bytes:
    """The pack as a PDF (A4)."""
    return _pdf(f"Evidence pack {pack.record['breach_id']}", pack.software, pack.data_sha256,
                lambda styles: _story(pack, styles))


def _cover(c: PeriodCover, styles) -> list:
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    rows = [["Record", "Type", "Start", "How it stands"]] + [
        [Paragraph(_esc(v), styles["BodyText"]) for v in r] for r in c.records]
    table = Table(rows, repeatRows=1, colWidths=[90, 90, 130, 170])
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.grey)]))
    return [Paragraph(f"Evidence pack: wearer {_esc(c.subject_id)}", styles["Title"]),
            Paragraph(f"Breach records that started {_esc(c.period)}: {len(c.records)}, each with its own "
                      "evidence on the pages that follow.", styles["BodyText"]), table,
            _kv_table([("Software", c.software), ("Data SHA-256", c.data_sha256 + " (of the records' data "
                                                                                  "SHA-256s, one a line, in order)"),
                       ("Generated", _generated(c))], styles)]


def period_pdf(cover: PeriodCover, packs: list[EvidencePack]) -> bytes:
    """The wearer-period pack as a PDF: the cover, then each record's pack from a new page."""
    from reportlab.platypus import PageBreak

    def story(styles) -> list:
        out = _cover(cover, styles)
        for p in packs:
            out += [PageBreak()] + _story(p, styles)
        return out

    return _pdf(f"Evidence pack for wearer {cover.subject_id}", cover.software, cover.data_sha256, story)
