"""Every skin tone: each style's identity scores on the evaluation set, by skin-tone group.

    .venv/bin/python -m benchmarks.skin_tones --out DIR [--styles a,b] [--variants 4] [--proof-long-side 1024]

Runs every portrait of `benchmarks/eval_set.py` (four people under four lightings, three of
them derived synthetically) through every style of the catalog with the stages an order
goes through, without Dagster: `prepare_selfie` framed for the 12x18 in poster, the first
round of `render_candidates`, then `identity_gate` regenerating the failed variants at
lower strength (the catalog's retry_decay and max_rounds), each candidate scored by
`score_candidate` against the selfie's embedding: what `assets/proofs.py`'s `selfie`,
`styled_candidates` and `validated_proofs` do. Engines: the embedded MagentaStylizer and
OpenCvFaceAnalyzer (YuNet + SFace). Each portrait has its own fixed order seed.

Writes DIR/skin_tones.json (one row per portrait and style), DIR/contact_<style>.jpg (every
portrait beside its proofs, the similarity on each tile; a variant that never passed shows
its last attempt, marked), PNG copies for viewing (DIR/contact_<style>.png at most 1400 px
wide, and DIR/contact_<style>_<person>.png, one page per person), and prints markdown
tables: per style and skin-tone group, the mean best delivered similarity and the mean
first-round similarity, the gap between the best and the worst group (flagged above 0.1,
the issue's bar) and the rejected orders; then per portrait and style. The group of a
person is measured on the "as shot" photograph (see eval_set.py).
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.eval_set import EvalPortrait, eval_portraits  # noqa: E402
from photogen_pipelines.catalog import Style, StyleCatalog, load_products, load_styles  # noqa: E402
from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer  # noqa: E402
from photogen_pipelines.engines.stylize_magenta import MagentaStylizer  # noqa: E402
from photogen_pipelines.errors import BadInput  # noqa: E402
from photogen_pipelines.generation.stages import (  # noqa: E402
    Candidate,
    Selfie,
    identity_gate,
    prepare_selfie,
    render_candidates,
    score_candidate,
)
from photogen_pipelines.imaging.images import Box  # noqa: E402

PRODUCT = "poster_12x18"
GAP_LIMIT = 0.1  # the bar: no group more than 0.1 below the others
GROUPS = ("light", "medium", "dark")
SHEET_WIDTH = 1600
DOCS_WIDTH = 900  # docs/contact_sheets: the as-shot portraits only, small enough to keep in git
PNG_WIDTH = 1400
GAP = 8
SHEET_HEADER = 34
BACKGROUND = (246, 243, 238)
PASS_COLOUR = (40, 140, 60)
FAIL_COLOUR = (190, 30, 30)


def order_seed(portrait: EvalPortrait) -> int:
    return zlib.crc32(portrait.name.encode())


@dataclass
class Row:
    portrait: str
    person: str
    lighting: str
    group: str
    ita: float
    person_ita: float
    style: str
    seed: int
    threshold: float
    selfie_error: str | None = None
    first_round: list[dict] = field(default_factory=list)  # each variant's first attempt
    attempts: list[dict] = field(default_factory=list)  # every attempt, in order
    delivered: list[dict] = field(default_factory=list)  # the proofs that passed
    best_similarity: float | None = None  # best delivered proof
    rounds: int = 0
    rejected: bool = True
    seconds: float = 0.0


def new_row(portrait: EvalPortrait, style: Style, selfie_error: str | None = None) -> Row:
    return Row(
        portrait.name,
        portrait.person,
        portrait.lighting,
        portrait.group,
        portrait.ita,
        portrait.person_ita,
        style.id,
        order_seed(portrait),
        style.identity_threshold,
        selfie_error=selfie_error,
    )


def _take(candidate: Candidate):
    return getattr(candidate, "take", None)


def _portrait_face(selfie: Selfie) -> Box | None:
    """The portrait's face box as `assets/proofs.py` passes it to `render_candidates` (read
    back from the stored SelfieInfo, so rounded as `Face.to_json` rounds it), where the
    stage takes one; None where `render_candidates` has no `face` parameter."""
    if "face" not in inspect.signature(render_candidates).parameters:
        return None
    return Box(*selfie.portrait_face.to_json()["box"])


def run_style(
    portrait: EvalPortrait, selfie: Selfie, style: Style, catalog: StyleCatalog, stylizer, analyzer, variants: int
) -> tuple[Row, dict[int, tuple[Candidate, dict]]]:
    """One order of `portrait` in `style`: the first round and the identity gate, as
    `styled_candidates` and `validated_proofs` run them. Returns the row and, per variant,
    the candidate shown on the contact sheet (its proof, or its last failed attempt)."""
    seed = order_seed(portrait)
    row = new_row(portrait, style)
    started = time.perf_counter()
    last: dict[int, Candidate] = {}
    takes: dict[tuple[int, int], str | None] = {}

    face = _portrait_face(selfie)

    def render(wanted: list[int], round_no: int) -> list[Candidate]:
        extra = {} if face is None else {"face": face}
        candidates = render_candidates(selfie.portrait, style, stylizer, seed, wanted, round_no, catalog.retry_decay, **extra)
        last.update({c.variant: c for c in candidates})
        takes.update({(c.variant, c.round): _take(c) for c in candidates})  # the take label, if the stage gives one
        return candidates

    first_round = render(list(range(variants)), 0)
    gate = identity_gate(
        first_round,
        render,
        lambda c: score_candidate(c, selfie.embedding, style.identity_threshold, analyzer),
        catalog.max_rounds,
    )
    for score in gate.scores:
        attempt = {
            "variant": score.variant,
            "round": score.round,
            "strength": score.strength,
            "similarity": score.similarity,
            "faces": score.faces,
            "passed": score.passed,
            "reason": score.reason,
            "take": takes.get((score.variant, score.round)),
        }
        row.attempts.append(attempt)
        if score.round == 0:
            row.first_round.append(attempt)
    final = {s["variant"]: s for s in row.attempts}  # each variant's last attempt
    row.delivered = [final[v] for v in sorted(gate.proofs)]
    row.best_similarity = max((d["similarity"] for d in row.delivered), default=None)
    row.rounds, row.rejected = gate.rounds, gate.rejected
    row.seconds = round(time.perf_counter() - started, 3)
    shown = {v: (gate.proofs.get(v, last[v]), final[v]) for v in sorted(final)}
    return row, shown


# -- contact sheets ---------------------------------------------------------------------


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _tile(image: np.ndarray, size: tuple[int, int], lines: list[str], colour, font) -> Image.Image:
    tile = Image.fromarray(image).convert("RGB")
    tile.thumbnail(size, Image.LANCZOS)
    canvas = Image.new("RGB", size, BACKGROUND)
    canvas.paste(tile, ((size[0] - tile.width) // 2, (size[1] - tile.height) // 2))
    draw = ImageDraw.Draw(canvas)
    line_h = font.size + 4 if hasattr(font, "size") else 14
    top = size[1] - line_h * len(lines) - 4
    draw.rectangle((0, top, size[0], size[1]), fill=(0, 0, 0))
    for i, text in enumerate(lines):
        draw.text((5, top + 2 + i * line_h), text, fill=colour if i == 0 else (235, 235, 235), font=font)
    return canvas


def _caption(attempt: dict) -> tuple[list[str], tuple[int, int, int]]:
    similarity = "no face" if attempt["similarity"] is None else f"{attempt['similarity']:.3f}"
    verdict = "pass" if attempt["passed"] else "FAILED"
    take = f" {attempt['take']}" if attempt.get("take") is not None else ""
    lines = [f"{similarity} {verdict}", f"v{attempt['variant']} r{attempt['round']} s{attempt['strength']:.2f}{take}"]
    return lines, PASS_COLOUR if attempt["passed"] else FAIL_COLOUR


def contact_sheet(
    style: Style, entries: list[tuple[EvalPortrait, np.ndarray, Row, dict]], variants: int, width: int = SHEET_WIDTH
) -> Image.Image:
    """One row per portrait: the framed input, then each variant's proof (or last attempt)."""
    columns = 1 + variants
    tile_w = (width - GAP * (columns + 1)) // columns
    tile_h = tile_w * 3 // 2  # the 12x18 in poster is 2:3
    header = SHEET_HEADER
    font, title_font = _font(max(11, tile_w // 16)), _font(20)
    sheet = Image.new("RGB", (width, header + len(entries) * (tile_h + GAP) + GAP), BACKGROUND)
    ImageDraw.Draw(sheet).text(
        (GAP, 8),
        f"{style.id}: identity threshold {style.identity_threshold:.2f}; input (group from 'as shot') | proofs",
        fill=(20, 20, 20),
        font=title_font,
    )
    for r, (portrait, framed, row, shown) in enumerate(entries):
        y = header + r * (tile_h + GAP)
        lines = [
            f"{portrait.person} {portrait.lighting}",
            f"{portrait.group}; ITA {portrait.ita:+.0f} ({portrait.person_ita:+.0f})",
        ]
        if row.selfie_error:
            lines.append(row.selfie_error[:40])
        sheet.paste(_tile(framed, (tile_w, tile_h), lines, (255, 255, 255), font), (GAP, y))
        for c, (candidate, attempt) in enumerate(shown.values(), start=1):
            text, colour = _caption(attempt)
            sheet.paste(_tile(candidate.image, (tile_w, tile_h), text, colour, font), (GAP + c * (tile_w + GAP), y))
    return sheet


def _save_sheets(out: Path, style: Style, entries, variants: int) -> None:
    sheet = contact_sheet(style, entries, variants)
    sheet.save(out / f"contact_{style.id}.jpg", quality=80, optimize=True)
    scale = min(1.0, PNG_WIDTH / sheet.width)
    small = sheet.resize((round(sheet.width * scale), round(sheet.height * scale)), Image.LANCZOS)
    small.save(out / f"contact_{style.id}.png", compress_level=1)  # for viewing only: fast beats small
    # a page per person (their rows are contiguous): the whole sheet is too tall to read at once
    header, row_h = round(SHEET_HEADER * scale), (sheet.height - SHEET_HEADER - GAP) / len(entries) * scale
    for person in dict.fromkeys(e[0].person for e in entries):
        rows = [i for i, e in enumerate(entries) if e[0].person == person]
        top, bottom = header + round(rows[0] * row_h), header + round((rows[-1] + 1) * row_h)
        page = Image.new("RGB", (small.width, header + bottom - top), BACKGROUND)
        page.paste(small.crop((0, 0, small.width, header)), (0, 0))
        page.paste(small.crop((0, top, small.width, bottom)), (0, header))
        page.save(out / f"contact_{style.id}_{person}.png", compress_level=1)


# -- tables -----------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def group_summary(rows: list[Row]) -> dict:
    """Per style and group: mean best delivered similarity (orders that delivered), mean
    first-round similarity (variants with a face found), no-face and rejected counts, and
    the gap between the best and the worst group of each mean."""
    summary: dict[str, dict] = {}
    for style in dict.fromkeys(r.style for r in rows):
        groups = {}
        for group in GROUPS:
            mine = [r for r in rows if r.style == style and r.group == group and not r.selfie_error]
            if not mine:
                continue
            firsts = [a["similarity"] for r in mine for a in r.first_round]
            groups[group] = {
                "orders": len(mine),
                "best": _mean([r.best_similarity for r in mine if r.best_similarity is not None]),
                "first": _mean([s for s in firsts if s is not None]),
                "first_no_face": sum(1 for s in firsts if s is None),
                "first_failed": sum(1 for r in mine for a in r.first_round if not a["passed"]),
                "first_variants": len(firsts),
                "rejected": sum(1 for r in mine if r.rejected),
            }
        gaps = {}
        for metric in ("best", "first"):
            values = [g[metric] for g in groups.values() if g[metric] is not None]
            gaps[metric] = max(values) - min(values) if len(values) > 1 else None
        summary[style] = {"groups": groups, "gaps": gaps}
    return summary


def tables(rows: list[Row], summary: dict) -> str:
    present = [g for g in GROUPS if any(g in s["groups"] for s in summary.values())]
    out = []
    head = ["style"]
    for metric in ("best delivered", "first round"):
        head += [f"{metric}: {g}" for g in present] + [f"{metric}: gap"]
    head += ["1st-round variants failed (" + " · ".join(present) + ")", "orders rejected (" + " · ".join(present) + ")"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for style, s in summary.items():
        cells = [style]
        for metric in ("best", "first"):
            cells += [_fmt(s["groups"].get(g, {}).get(metric)) for g in present]
            gap = s["gaps"][metric]
            cells.append(_fmt(gap) + (" **> 0.1**" if gap is not None and gap > GAP_LIMIT else ""))
        g = s["groups"]
        cells.append(" · ".join(f"{g[x]['first_failed']} of {g[x]['first_variants']}" if x in g else "-" for x in present))
        cells.append(" · ".join(f"{g[x]['rejected']} of {g[x]['orders']}" if x in g else "-" for x in present))
        out.append("| " + " | ".join(cells) + " |")
    people = {r.person: (r.group, r.person_ita) for r in rows}
    out += ["", "Groups (ITA as shot): " + ", ".join(f"{p} {g} ({ita:+.1f})" for p, (g, ita) in people.items())]

    # per portrait: best delivered similarity (first-round mean in brackets), R = rejected
    styles = list(summary)
    out += ["", "| portrait | group | ITA | " + " | ".join(styles) + " |", "|" + "---|" * (3 + len(styles))]
    for name in dict.fromkeys(r.portrait for r in rows):
        mine = {r.style: r for r in rows if r.portrait == name}
        first = next(iter(mine.values()))
        cells = [name, first.group, f"{first.ita:+.1f}"]
        for style in styles:
            r = mine.get(style)
            if r is None or r.selfie_error:
                cells.append("selfie refused" if r else "-")
                continue
            firsts = [a["similarity"] for a in r.first_round if a["similarity"] is not None]
            best = "R" if r.rejected else _fmt(r.best_similarity)
            cells.append(f"{best} ({_fmt(_mean(firsts))})")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Cells: best delivered similarity (mean first-round similarity); R: rejected, no proof delivered.")
    return "\n".join(out)


# -- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--styles", default="", help="comma-separated style ids (default: the whole catalog)")
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--proof-long-side", type=int, default=1024)
    parser.add_argument("--docs", type=Path, help="also write a small sheet per style of the as-shot portraits here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    catalog = load_styles()
    styles = [catalog.get(s) for s in args.styles.split(",") if s] or catalog.styles
    product = load_products().get(PRODUCT)
    analyzer, stylizer = OpenCvFaceAnalyzer(), MagentaStylizer()
    portraits = eval_portraits(analyzer)

    # the framed selfies do not depend on the style: prepared once per portrait
    selfies: dict[str, Selfie | str] = {}
    for portrait in portraits:
        try:
            selfies[portrait.name] = prepare_selfie(portrait.data, product, analyzer, args.proof_long_side)
        except BadInput as refused:
            selfies[portrait.name] = f"{getattr(refused, 'code', 'bad_input')}: {refused}"
    prepared = time.perf_counter() - started

    rows: list[Row] = []
    for style in styles:
        style_started = time.perf_counter()
        entries = []
        for portrait in portraits:
            selfie = selfies[portrait.name]
            if isinstance(selfie, str):
                row = new_row(portrait, style, selfie_error=selfie)
                framed, shown = np.asarray(Image.open(io.BytesIO(portrait.data)).convert("RGB")), {}
            else:
                row, shown = run_style(portrait, selfie, style, catalog, stylizer, analyzer, args.variants)
                framed = selfie.portrait
            rows.append(row)
            entries.append((portrait, framed, row, shown))
        _save_sheets(args.out, style, entries, args.variants)
        if args.docs:
            args.docs.mkdir(parents=True, exist_ok=True)
            as_shot = [e for e in entries if e[0].lighting == "as_shot"]
            docs_sheet = contact_sheet(style, as_shot, args.variants, width=DOCS_WIDTH)
            docs_sheet.save(args.docs / f"{style.id}.jpg", quality=72, optimize=True)
        print(f"{style.id}: {time.perf_counter() - style_started:.1f} s", file=sys.stderr, flush=True)

    summary = group_summary(rows)
    wall = time.perf_counter() - started
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "engines": {"stylizer": stylizer.version, "faces": analyzer.version},
        "product": PRODUCT,
        "variants": args.variants,
        "proof_long_side": args.proof_long_side,
        "retry_decay": catalog.retry_decay,
        "max_rounds": catalog.max_rounds,
        "wall_seconds": round(wall, 1),
        "prepare_seconds": round(prepared, 1),
        "portraits": [
            {k: getattr(p, k) for k in ("name", "person", "lighting", "group", "ita", "person_ita", "derived", "credit")}
            for p in portraits
        ],
        "summary": summary,
        "rows": [vars(r) for r in rows],
    }
    (args.out / "skin_tones.json").write_text(json.dumps(report, indent=1))
    print(tables(rows, summary))
    print()
    print(
        f"{len(portraits)} portraits x {len(styles)} styles x {args.variants} variants, proofs at {args.proof_long_side} px; "
        f"wall time {wall:.1f} s ({prepared:.1f} s preparing selfies) on {report['machine']}"
    )
    print(f"Contact sheets and skin_tones.json in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
