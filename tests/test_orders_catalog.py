"""The order state machine and the catalogs."""

import pytest

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.errors import IllegalTransition, NotFound
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState

S = OrderState


def _order(**kwargs) -> Order:
    return Order(style_id="sepia_oil", product_id="poster_a3", upload_key="orders/x/upload", **kwargs)


def test_the_happy_path_is_legal_and_recorded():
    order = _order()
    path = [S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY]
    for state in path:
        assert order.transition(state)
    assert [e.to_state for e in order.events] == path
    assert order.events[0].from_state == S.AWAITING_PAYMENT


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.AWAITING_PAYMENT, S.GENERATING),
        (S.PAID, S.READY),
        (S.REFUNDED, S.PAID),
        (S.REJECTED, S.APPROVED),
        (S.READY, S.CANCELLED),
    ],
)
def test_illegal_transitions_raise(start, target):
    order = _order(state=start)
    with pytest.raises(IllegalTransition):
        order.transition(target)
    assert order.state == start and order.events == []


def test_a_repeated_event_is_harmless():
    order = _order()
    assert order.transition(S.PAID, "webhook")
    assert not order.transition(S.PAID, "the same webhook again")
    assert len(order.events) == 1 and order.reason == "webhook"


def test_every_exit_can_be_refunded_once():
    for exit_state in (S.REJECTED, S.FAILED, S.CANCELLED):
        order = _order(state=exit_state)
        order.transition(S.REFUNDED)
        with pytest.raises(IllegalTransition):
            order.transition(S.PAID)


def test_order_seed_is_stable_per_order_and_differs_between_orders():
    a, b = _order(), _order()
    assert a.seed == Order.model_validate_json(a.model_dump_json()).seed
    assert a.seed != b.seed


def test_the_order_book_persists_transitions(orders_db):
    book = SqlOrderBook(orders_db)
    order = book.add(_order())
    book.transition(order.id, S.PAID, "payments off")
    book.record_stage(order.id, "selfie", 0.1234)
    reread = SqlOrderBook(orders_db).get(order.id)
    assert reread.state == S.PAID and reread.stage_seconds == {"selfie": 0.123}
    assert [(e.from_state, e.to_state) for e in reread.events] == [(None, S.AWAITING_PAYMENT), (S.AWAITING_PAYMENT, S.PAID)]
    with pytest.raises(IllegalTransition):
        book.transition(order.id, S.READY)
    assert book.get(order.id).state == S.PAID  # the refused move left no trace
    with pytest.raises(NotFound):
        book.get("ord_missing")
    with pytest.raises(NotFound):
        book.get("../etc/passwd")


def test_style_catalog_has_distinct_styles_with_thresholds():
    catalog = load_styles()
    assert len(catalog.styles) >= 6
    assert len(set(catalog.ids())) == len(catalog.styles)
    assert all(0.3 <= s.identity_threshold < 1 for s in catalog.styles)
    with pytest.raises(NotFound) as raised:
        catalog.get("nope")
    assert raised.value.code == "unknown_style"


@pytest.mark.parametrize(
    ("product_id", "pixels"),
    [("poster_12x18", (3694, 5494)), ("poster_18x24", (5494, 7294)), ("poster_a3", (3508, 4961)), ("poster_a2", (4961, 7016))],
)
def test_products_have_print_pixel_sizes(product_id, pixels):
    # docs/architecture.md §7: inches x 300 DPI, plus 4 mm bleed (47 px) per side where the product has it
    assert load_products().get(product_id).pixel_size == pixels


def test_every_packaged_style_renders_on_both_engines():
    for style in load_styles().styles:
        assert style.engine_params("embedded").strength > 0
        diffusion = style.engine_params("diffusion")
        assert "portrait" in diffusion.prompt and 0 < diffusion.strength <= 1, style.id
