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
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.service.evidence_pack import EvidencePack
from api.service.london import london_time
from trails.timestamps import format_ms

__all__ = ["pack_html", "pack_pdf", "TEMPLATES"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def _generated(pack: EvidencePack) -> str:
    return f"{london_time(pack.generated_ms).text} ({format_ms(pack.generated_ms)})"


def pack_html(pack: EvidencePack) -> bytes:
    """The pack as one HTML file (UTF-8)."""
    html = _environment().get_template("evidence_pack.html").render(
        p=pack, generated=_generated(pack), map_src="data:image/png;base64," + base64.b64encode(pack.map_png).decode(),
        timeline_src="data:image/png;base64," + base64.b64encode(pack.timeline_png).decode())
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


def pack_pdf(pack: EvidencePack) -> bytes:
    """The pack as a PDF (A4)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import SimpleDocTemplate

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, invariant=1, title=f"Evidence pack {pack.record['breach_id']}",
                            author="tagtrail", creator=pack.software, subject=f"data SHA-256 {pack.data_sha256}",
                            leftMargin=50, rightMargin=50, topMargin=50, bottomMargin=50)
    doc.build(_story(pack, getSampleStyleSheet()))
    return buf.getvalue()
