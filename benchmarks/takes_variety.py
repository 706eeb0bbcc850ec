"""Proof variety by take: does every take of every style read as itself at thumbnail size?

    .venv/bin/python -m benchmarks.takes_variety --out DIR [--docs docs/contact_sheets] [--styles a,b]

Runs the as-shot portrait of each person of `benchmarks/eval_set.py` (the three reference
faces and scikit-image's astronaut) through every style of the catalog, with the stages an
order goes through: `prepare_selfie` framed for the 12x18 in poster, then
`render_candidates` for an order of as many proofs as there are takes (one fixed order
seed), each proof scored by `score_candidate` against the selfie (SFace). Between every two
proofs, variety.py's `proof_distance` (1 - SSIM on CIELAB at 64 px).

Prints a markdown table: per style, the takes it offers and leaves out (styles.yaml,
`without_takes`), the smallest distance between two offered takes over the portraits
(the bar is variety.MIN_TAKE_DISTANCE) and its pair, the closest a left-out take comes to
another take, and the lowest identity of an offered take. Writes DIR/takes_variety.json
(every pair's distance per portrait), and a contact sheet per style (DIR/takes_<style>.png:
a row per person, the framed selfie then each proof at thumbnail size, captioned with its
take, its distance to the classic take and its identity; a take the style does not offer is
marked). With --docs the sheets also go there as JPEG (takes_<style>.jpg).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from itertools import combinations
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.eval_set import eval_portraits  # noqa: E402
from photogen_pipelines.catalog import Style, load_products, load_styles  # noqa: E402
from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer  # noqa: E402
from photogen_pipelines.engines.stylize_magenta import MagentaStylizer  # noqa: E402
from photogen_pipelines.generation import stages, takes  # noqa: E402
from photogen_pipelines.imaging.variety import MIN_TAKE_DISTANCE, proof_distance  # noqa: E402

PRODUCT = "poster_12x18"
ORDER_SEED = 20261129  # tests/test_takes.py's
TILE_W = 192  # a storefront thumbnail's width: what a customer compares proofs at
DOCS_WIDTH = 1300  # the copy in docs/contact_sheets (9 columns): small enough to keep in git
GAP = 6
HEADER = 30
BACKGROUND = (246, 243, 238)
OFFERED, LEFT_OUT = (235, 235, 235), (255, 120, 110)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def every_take(style: Style) -> Style:
    """The style offering every take: an order's variants go round the takes its style
    offers (takes.take_for), so the left-out ones are rendered from this copy."""
    return style.model_copy(update={"embedded": style.embedded.model_copy(update={"without_takes": []})})


def render_style(style: Style, selfies: dict, stylizer, analyzer) -> dict:
    """Per person: an order of as many proofs as the style offers takes, then each left-out
    take (at its variant in a style offering them all), in TAKES order; their identities
    and distances."""
    offered = [t.name for t in takes.offered(style.embedded.without_takes)]
    left_out = [v for v, name in enumerate(takes.TAKE_NAMES) if name not in offered]
    rows = {}
    for person, selfie in selfies.items():
        started = time.perf_counter()
        args = (stylizer, ORDER_SEED)
        order = stages.render_candidates(
            selfie.portrait, style, *args, list(range(len(offered))), 0, 0.6, selfie.portrait_face.box
        )
        extra = stages.render_candidates(selfie.portrait, every_take(style), *args, left_out, 0, 0.6, selfie.portrait_face.box)
        candidates = sorted([*order, *extra], key=lambda c: takes.TAKE_NAMES.index(c.take))
        scores = [stages.score_candidate(c, selfie.embedding, style.identity_threshold, analyzer) for c in candidates]
        distances = {
            f"{a.take}-{b.take}": round(proof_distance(a.image, b.image), 3)
            for a, b in combinations(candidates, 2)
            if a.take != b.take
        }
        rows[person] = {
            "takes": [c.take for c in candidates],
            "images": [c.image for c in candidates],
            "identity": [s.similarity for s in scores],
            "distances": distances,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return rows


def summary(style: Style, rows: dict) -> dict:
    offered = {take.name for take in takes.offered(style.embedded.without_takes)}
    pairs: dict[str, float] = {}
    for row in rows.values():
        for pair, distance in row["distances"].items():
            pairs[pair] = min(pairs.get(pair, 1.0), distance)
    inside = {p: d for p, d in pairs.items() if set(p.split("-")) <= offered}
    outside = {p: d for p, d in pairs.items() if not set(p.split("-")) <= offered}
    closest = min(inside.items(), key=lambda kv: kv[1])
    left_out_closest = min(outside.items(), key=lambda kv: kv[1]) if outside else None
    identities = [s for row in rows.values() for take, s in zip(row["takes"], row["identity"], strict=True) if take in offered]
    return {
        "offered": [t.name for t in takes.offered(style.embedded.without_takes)],
        "without": list(style.embedded.without_takes),
        "min_offered": closest,
        "min_left_out": left_out_closest,
        "min_identity": min((s for s in identities if s is not None), default=None),
        "faceless": sum(s is None for s in identities),
        "pairs": pairs,
    }


def contact_sheet(style: Style, selfies: dict, rows: dict, offered: set[str]) -> Image.Image:
    columns = 1 + len(takes.TAKES)
    tile_h = TILE_W * 3 // 2
    width = GAP + columns * (TILE_W + GAP)
    sheet = Image.new("RGB", (width, HEADER + len(rows) * (tile_h + GAP) + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, title = _font(12), _font(18)
    draw.text(
        (GAP, 6),
        f"{style.id}: each take at thumbnail size; distance to the classic take (bar {MIN_TAKE_DISTANCE:.2f}) and identity "
        f"(threshold {style.identity_threshold:.2f})",
        fill=(20, 20, 20),
        font=title,
    )
    for r, (person, row) in enumerate(rows.items()):
        y = HEADER + r * (tile_h + GAP)
        pictures = [(selfies[person].portrait, [person, "the selfie, framed"], (255, 255, 255))]
        for take, image, identity in zip(row["takes"], row["images"], row["identity"], strict=True):
            distance = 0.0 if take == "classic" else row["distances"].get(f"classic-{take}", float("nan"))
            shown = "no face" if identity is None else f"id {identity:.2f}"
            lines = [take + ("" if take in offered else ": not offered"), f"d {distance:.2f}  {shown}"]
            pictures.append((image, lines, OFFERED if take in offered else LEFT_OUT))
        for c, (image, lines, colour) in enumerate(pictures):
            tile = Image.fromarray(image).convert("RGB")
            tile.thumbnail((TILE_W, tile_h), Image.LANCZOS)
            x = GAP + c * (TILE_W + GAP)
            sheet.paste(tile, (x + (TILE_W - tile.width) // 2, y + (tile_h - tile.height) // 2))
            top = y + tile_h - 34
            draw.rectangle((x, top, x + TILE_W, y + tile_h), fill=(0, 0, 0))
            for i, text in enumerate(lines):
                draw.text((x + 4, top + 3 + i * 15), text, fill=colour if i == 0 else (235, 235, 235), font=font)
    return sheet


def table(results: dict) -> str:
    lines = [
        "| style | offered | left out | closest offered pair | closest left-out pair | lowest identity |",
        "|---|---|---|---|---|---|",
    ]
    for style_id, s in results.items():
        pair, distance = s["min_offered"]
        left = "-" if s["min_left_out"] is None else f"{s['min_left_out'][0]} {s['min_left_out'][1]:.2f}"
        faceless = f" ({s['faceless']} no face)" if s["faceless"] else ""
        lines.append(
            f"| {style_id} | {len(s['offered'])} | {', '.join(s['without']) or '-'} | {pair} {distance:.2f}"
            f"{'' if distance >= MIN_TAKE_DISTANCE else ' **below**'} | {left} | {s['min_identity']:.2f}{faceless} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--styles", default="", help="comma-separated style ids (default: the whole catalog)")
    parser.add_argument("--docs", type=Path, help="also write each style's sheet here (takes_<style>.jpg)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    catalog = load_styles()
    styles = [catalog.get(s) for s in args.styles.split(",") if s] or catalog.styles
    product = load_products().get(PRODUCT)
    analyzer, stylizer = OpenCvFaceAnalyzer(), MagentaStylizer()
    selfies = {
        p.person: stages.prepare_selfie(p.data, product, analyzer, 1024)
        for p in eval_portraits(analyzer)
        if p.lighting == "as_shot"
    }
    results, report = {}, {}
    for style in styles:
        style_started = time.perf_counter()
        rows = render_style(style, selfies, stylizer, analyzer)
        results[style.id] = summary(style, rows)
        sheet = contact_sheet(style, selfies, rows, set(results[style.id]["offered"]))
        sheet.save(args.out / f"takes_{style.id}.png", compress_level=1)
        if args.docs:
            args.docs.mkdir(parents=True, exist_ok=True)
            small = sheet.resize((DOCS_WIDTH, round(sheet.height * DOCS_WIDTH / sheet.width)), Image.LANCZOS)
            small.save(args.docs / f"takes_{style.id}.jpg", quality=70, optimize=True)
        report[style.id] = {
            **results[style.id],
            "rows": {person: {k: v for k, v in row.items() if k != "images"} for person, row in rows.items()},
        }
        print(f"{style.id}: {time.perf_counter() - style_started:.1f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    (args.out / "takes_variety.json").write_text(
        json.dumps({"machine": machine, "wall_seconds": round(wall, 1), "bar": MIN_TAKE_DISTANCE, "styles": report}, indent=1)
    )
    print(table(results))
    print(f"\n{len(selfies)} portraits x {len(styles)} styles x {len(takes.TAKES)} proofs; wall time {wall:.1f} s on {machine}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
