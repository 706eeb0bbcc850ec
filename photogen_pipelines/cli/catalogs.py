"""`photogen styles`, `photogen products` and `photogen kinds`: the catalogs a storefront sells from."""

from __future__ import annotations

import click

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.catalog.kinds import load_kinds
from photogen_pipelines.cli.common import emit


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The catalog as JSON.")
def styles(as_json: bool) -> None:
    """The style catalog."""
    catalog = load_styles()
    rows = [f"{s.id:<20} {s.name:<20} identity ≥ {s.identity_threshold:.2f}  {s.description}" for s in catalog.styles]
    emit(as_json, catalog.model_dump(mode="json"), "\n".join(rows))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The catalog as JSON.")
def products(as_json: bool) -> None:
    """The print products, with pixel sizes and prices."""
    catalog = load_products()
    payload = [{**p.model_dump(mode="json"), "pixel_size": list(p.pixel_size)} for p in catalog.products]
    rows = [
        f"{p.id:<14} {p.name:<26} {p.pixel_size[0]}x{p.pixel_size[1]} px  {p.format:<4}  ${p.price_cents / 100:.2f}"
        for p in catalog.products
    ]
    emit(as_json, payload, "\n".join(rows))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The kinds as JSON, with every input, shot, gate and price.")
def kinds(as_json: bool) -> None:
    """The studio's job kinds: what each takes, the shots it makes and the engines that can."""
    catalog = load_kinds()
    payload = [{**kind.model_dump(mode="json"), "shot_names": kind.shot_names()} for kind in catalog.kinds]
    blocks = []
    for kind in catalog.kinds:
        inputs = ", ".join(i.name + ("" if i.required else "?") for i in kind.inputs)
        shots = kind.shot_names()
        blocks.append(
            "\n".join(
                [
                    f"{kind.id}: {kind.name}. {kind.description}",
                    f"  takes    {inputs}",
                    f"  shots    {'the tier’s proofs' if shots is None else f'{len(shots)}: ' + ', '.join(shots)}",
                    f"  gates    {', '.join(kind.gates + kind.across)}",
                    f"  gives    {', '.join(kind.outputs)}",
                    f"  engines  {', '.join(kind.engines)}",
                    f"  on CPU   {kind.embedded or 'refused: needs one of the engines above'}",
                ]
            )
        )
    emit(as_json, payload, "\n\n".join(blocks))
