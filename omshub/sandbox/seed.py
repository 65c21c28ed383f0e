"""Realistic demo and test data for the OMS source tables, generated rather than dumped.

Long file: the shop's data model in one place (products, orders, stock, cancel applications and
their inserts), so generated rows and their SQL stay in step.

Generated from a ``random.Random`` so a seed reproduces the same orders in a test, a benchmark
and a bug report. The shapes follow the fresh-food shop in the seed documents: 1-4 lines per order,
bilingual product names, order-level promotion, coupon and freight allocated (分摊) to the lines in
exact cents so every line column sums to the order column, a minority of supplier direct-ship
(产地直发) and presale (预售) orders, stock per warehouse, and about one cancel application per
hundred orders.

Amounts obey, per order and per line::

    pay_amount = total_amount (line_amount) - discount_amount - coupon_amount + freight_amount

Datetimes are timezone-aware UTC in the dataclasses and written naive, because ``make_engine``
pins the session time zone to UTC.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from omshub.core.errors import ContractError
from omshub.core.money import allocate as allocate  # re-exported: seed.allocate is public

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
WAREHOUSES: tuple[str, ...] = ("SH01", "BJ01", "GZ01")
ORDER_STATUSES: tuple[str, ...] = (
    "CREATED",
    "PAID",
    "SENT_TO_WMS",
    "SHIPPED",
    "SIGNED",
    "CANCELLED",
    "CLOSED",
)
#: Fixed clock for generate_orders so the same seed gives byte-identical rows.
DEFAULT_NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FREE_FREIGHT_THRESHOLD = Decimal("99.00")
COLD_CHAIN_FREIGHT = Decimal("8.00")
#: Cap on promotion + coupon as a share of the order. Keeping it well below 1 guarantees that,
#: after cent rounding, no line's pay_amount can go negative.
MAX_REDUCTION_SHARE = Decimal("0.40")

DIRECT_SHIP_RATE = 0.10
PRESALE_RATE = 0.08
COUPON_RATE = 0.25
CANCEL_APPLICATION_RATE = 0.01


@dataclass(frozen=True)
class Product:
    """A catalogue entry. ``supplier_code`` marks products a supplier can ship from origin."""

    sku_code: str
    name: str
    price: Decimal
    supplier_code: str | None = None
    presale: bool = False


def _p(
    sku: str, name: str, price: str, supplier: str | None = None, presale: bool = False
) -> Product:
    return Product(sku, name, Decimal(price), supplier, presale)


PRODUCTS: tuple[Product, ...] = (
    _p("SKU10001", "智利车厘子 2斤装 Chilean Cherries 1kg", "139.00", "SUP001", True),
    _p("SKU10002", "阳光玫瑰葡萄 1.5斤 Shine Muscat Grapes 750g", "59.90"),
    _p("SKU10003", "海南贵妃芒 5斤装 Hainan Guifei Mango 2.5kg", "49.90", "SUP002"),
    _p("SKU10004", "佳沛阳光金果 12粒 Zespri SunGold Kiwifruit x12", "89.00"),
    _p("SKU10005", "有机菠菜 300g Organic Spinach 300g", "12.90"),
    _p("SKU10006", "云南小番茄 500g Yunnan Cherry Tomatoes 500g", "15.80", "SUP004"),
    _p("SKU10007", "五常稻花香大米 5kg Wuchang Rice 5kg", "79.00"),
    _p("SKU10008", "澳洲谷饲西冷牛排 200g Australian Grain-fed Sirloin 200g", "69.00"),
    _p("SKU10009", "挪威三文鱼刺身 250g Norwegian Salmon Sashimi 250g", "88.00"),
    _p("SKU10010", "散养土鸡蛋 30枚 Free-range Eggs x30", "45.00"),
    _p("SKU10011", "鲜牛奶 950ml Fresh Milk 950ml", "19.80"),
    _p("SKU10012", "希腊酸奶 400g Greek Yogurt 400g", "22.50"),
    _p("SKU10013", "厄瓜多尔白虾 1kg Ecuadorian White Shrimp 1kg", "118.00"),
    _p("SKU10014", "黑猪五花肉 500g Black Pork Belly 500g", "39.90"),
    _p("SKU10015", "赣南脐橙 5斤装 Gannan Navel Oranges 2.5kg", "35.90", "SUP003", True),
    _p("SKU10016", "丹东99草莓 3斤装 Dandong Strawberries 1.5kg", "99.00", None, True),
    _p("SKU10017", "阳澄湖大闸蟹礼盒 8只 Yangcheng Lake Hairy Crab x8", "398.00", "SUP005", True),
    _p("SKU10018", "香格里拉松茸 250g Shangri-La Matsutake 250g", "268.00", "SUP004", True),
    _p("SKU10019", "有机西兰花 500g Organic Broccoli 500g", "9.90"),
    _p("SKU10020", "章丘大葱 1kg Zhangqiu Scallions 1kg", "8.80"),
    _p("SKU10021", "内蒙古羔羊肉卷 400g Inner Mongolia Lamb Rolls 400g", "42.00"),
    _p("SKU10022", "墨西哥牛油果 4粒装 Hass Avocado x4", "29.90"),
    _p("SKU10023", "秘鲁蓝莓 125g×4盒 Peruvian Blueberries 125g x4", "59.00"),  # noqa: RUF001
    _p("SKU10024", "有机胡萝卜 1kg Organic Carrots 1kg", "11.90"),
    _p("SKU10025", "冰鲜鸡胸肉 1kg Chilled Chicken Breast 1kg", "32.00"),
    _p("SKU10026", "手工水饺 猪肉白菜 1kg Pork & Cabbage Dumplings 1kg", "36.00"),
    _p("SKU10027", "北海道扇贝柱 500g Hokkaido Scallops 500g", "128.00"),
    _p("SKU10028", "徐香猕猴桃 3斤 Xuxiang Kiwifruit 1.5kg", "29.80", "SUP003"),
    _p("SKU10029", "总统淡味黄油 200g Président Unsalted Butter 200g", "28.00"),
    _p("SKU10030", "全麦吐司 400g Whole Wheat Toast 400g", "16.80"),
)

_STATUS_WEIGHTS = (8, 15, 12, 20, 36, 6, 3)  # same order as ORDER_STATUSES
_LINE_COUNT_WEIGHTS = (45, 30, 15, 10)  # 1..4 lines
_QUANTITY_WEIGHTS = (60, 25, 10, 3, 2)  # 1..5 units
_WAREHOUSE_WEIGHTS = (50, 30, 20)
_CANCEL_REASONS = (
    "不想要了 Changed my mind",
    "地址填错了 Wrong address",
    "配送时间太晚 Delivery slot too late",
    "重复下单 Duplicate order",
    "商品降价了 Price dropped",
)


@dataclass(frozen=True)
class OrderItemSeed:
    """One ``oms_order_item`` row."""

    order_no: str
    line_no: int
    sku_code: str
    sku_name: str
    quantity: int
    unit_price: Decimal
    line_amount: Decimal
    discount_amount: Decimal
    coupon_amount: Decimal
    freight_amount: Decimal
    pay_amount: Decimal


@dataclass(frozen=True)
class OrderSeed:
    """One ``oms_order`` row with its lines."""

    order_no: str
    user_id: int
    status: str
    direct_ship: bool
    presale: bool
    warehouse_code: str
    supplier_code: str | None
    total_amount: Decimal
    discount_amount: Decimal
    coupon_amount: Decimal
    freight_amount: Decimal
    pay_amount: Decimal
    coupon_id: int | None
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime
    items: tuple[OrderItemSeed, ...] = field(default=())


@dataclass(frozen=True)
class StockSeed:
    """One ``wms_inv`` row."""

    sku_code: str
    warehouse_code: str
    on_hand: int
    occupied: int
    safety: int
    version: int = 1

    @property
    def sellable(self) -> int:
        return max(0, self.on_hand - self.occupied - self.safety)


@dataclass(frozen=True)
class CancelApplicationSeed:
    """One ``cs_cancel_application`` row."""

    application_no: str
    order_no: str
    step: str
    status: str
    reason: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SeedSummary:
    """What ``seed_demo`` wrote, for the CLI to print and tests to assert on."""

    seed: int
    orders: int
    order_items: int
    stock_rows: int
    cancel_applications: int
    first_order_no: str | None
    last_order_no: str | None
    direct_ship_orders: int
    presale_orders: int


# ------------------------------------------------------------------------------------ amounts


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT)


# ------------------------------------------------------------------------------------- orders


def generate_orders(
    rng: random.Random,
    n: int,
    start_no: int = 1,
    *,
    now: datetime = DEFAULT_NOW,
    products: Sequence[Product] = PRODUCTS,
    days: int = 3,
) -> list[OrderSeed]:
    """``n`` orders created over the ``days`` before ``now``, numbered from ``start_no``.

    Order numbers are ``SO<yyyymmdd><6-digit sequence>`` (the sequence alone is unique, the date
    makes them read like production ones); they ascend with ``created_at``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    span_ms = days * 86_400_000
    offsets = sorted(rng.randrange(span_ms) for _ in range(n))
    users = [100_001 + k for k in range(max(20, n // 3))]
    by_supplier: dict[str, list[Product]] = {}
    for product in products:
        if product.supplier_code:
            by_supplier.setdefault(product.supplier_code, []).append(product)
    presale_products = [p for p in products if p.presale]
    orders: list[OrderSeed] = []
    for k, offset in enumerate(offsets):
        created = now - timedelta(milliseconds=span_ms - offset)
        orders.append(
            _one_order(
                rng,
                order_no=f"SO{created:%Y%m%d}{start_no + k:06d}",
                created=created,
                now=now,
                user_id=rng.choice(users),
                products=products,
                by_supplier=by_supplier,
                presale_products=presale_products,
            )
        )
    return orders


def _one_order(
    rng: random.Random,
    *,
    order_no: str,
    created: datetime,
    now: datetime,
    user_id: int,
    products: Sequence[Product],
    by_supplier: Mapping[str, Sequence[Product]],
    presale_products: Sequence[Product],
) -> OrderSeed:
    direct_ship = bool(by_supplier) and rng.random() < DIRECT_SHIP_RATE
    presale = rng.random() < PRESALE_RATE
    supplier_code: str | None = None
    if direct_ship:
        # A supplier ships only its own products, so the whole order comes from one supplier.
        suppliers = sorted(by_supplier)
        if presale:
            suppliers = [
                s for s in suppliers if any(p.presale for p in by_supplier[s])
            ] or suppliers
        supplier_code = rng.choice(suppliers)
        pool = list(by_supplier[supplier_code])
        lines = rng.sample(pool, rng.randint(1, len(pool)))
        candidates = [p for p in pool if p.presale]
    else:
        count = rng.choices(range(1, 5), weights=_LINE_COUNT_WEIGHTS)[0]
        lines = rng.sample(list(products), min(count, len(products)))
        candidates = list(presale_products)
    presale = presale and bool(candidates)
    if presale:
        # A presale campaign sells the seasonal item; it leads the order.
        lead = rng.choice(candidates)
        lines = [lead, *[p for p in lines if p != lead]][:4]

    quantities = [rng.choices(range(1, 6), weights=_QUANTITY_WEIGHTS)[0] for _ in lines]
    line_amounts = [_money(p.price * q) for p, q in zip(lines, quantities, strict=True)]
    total = sum(line_amounts, ZERO)
    discount = _promotion(rng, total)
    coupon, coupon_id = _coupon(rng, total, discount)
    freight = ZERO if total - discount - coupon >= FREE_FREIGHT_THRESHOLD else COLD_CHAIN_FREIGHT
    pay = total - discount - coupon + freight

    discounts = allocate(discount, line_amounts)
    coupons = allocate(coupon, line_amounts)
    freights = allocate(freight, line_amounts)
    items = tuple(
        OrderItemSeed(
            order_no=order_no,
            line_no=i + 1,
            sku_code=p.sku_code,
            sku_name=p.name,
            quantity=q,
            unit_price=p.price,
            line_amount=la,
            discount_amount=d,
            coupon_amount=c,
            freight_amount=f,
            pay_amount=la - d - c + f,
        )
        for i, (p, q, la, d, c, f) in enumerate(
            zip(lines, quantities, line_amounts, discounts, coupons, freights, strict=True)
        )
    )

    status = rng.choices(ORDER_STATUSES, weights=_STATUS_WEIGHTS)[0]
    if presale and status in ("SENT_TO_WMS", "SHIPPED", "SIGNED"):
        status = "PAID"  # presale goods wait for the harvest before fulfilment
    paid = status not in ("CREATED", "CLOSED") and not (
        status == "CANCELLED" and rng.random() < 0.4
    )
    paid_at = _ms(created + timedelta(seconds=rng.randint(5, 900))) if paid else None
    lifetime = {
        "CREATED": 0,
        "PAID": 0,
        "CLOSED": 600,
        "CANCELLED": 1800,
        "SENT_TO_WMS": 3600,
        "SHIPPED": 6 * 3600,
        "SIGNED": 30 * 3600,
    }[status]
    touched = (paid_at or created) + timedelta(seconds=rng.randint(0, max(lifetime, 1)))
    return OrderSeed(
        order_no=order_no,
        user_id=user_id,
        status=status,
        direct_ship=direct_ship,
        presale=presale,
        warehouse_code=rng.choices(WAREHOUSES, weights=_WAREHOUSE_WEIGHTS)[0],
        supplier_code=supplier_code,
        total_amount=total,
        discount_amount=discount,
        coupon_amount=coupon,
        freight_amount=freight,
        pay_amount=pay,
        coupon_id=coupon_id,
        paid_at=paid_at if paid_at is None else min(paid_at, now),
        created_at=_ms(created),
        updated_at=_ms(min(touched, now)),
        items=items,
    )


def _promotion(rng: random.Random, total: Decimal) -> Decimal:
    """满减: tiered money-off promotions, as fresh-food shops run them most days."""
    if total >= Decimal("299") and rng.random() < 0.6:
        return Decimal("30.00")
    if total >= Decimal("199") and rng.random() < 0.5:
        return Decimal("20.00")
    if total >= Decimal("99") and rng.random() < 0.4:
        return Decimal("10.00")
    return ZERO


def _coupon(rng: random.Random, total: Decimal, discount: Decimal) -> tuple[Decimal, int | None]:
    if rng.random() >= COUPON_RATE:
        return ZERO, None
    face = Decimal(rng.choice((5, 10, 20, 30, 50)))
    # A coupon needs a minimum spend, and promotion + coupon stay under the reduction cap.
    if total < face * 3 or discount + face > total * MAX_REDUCTION_SHARE:
        return ZERO, None
    return _money(face), rng.randint(700_001, 799_999)


def _ms(value: datetime) -> datetime:
    """Truncate to milliseconds: the columns are (3) and round trips must compare equal."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


# -------------------------------------------------------------------------- stock, applications


def generate_stock(
    rng: random.Random, skus: Iterable[str], warehouses: Sequence[str] = WAREHOUSES
) -> list[StockSeed]:
    """Stock rows for each sku in most warehouses (every sku stocked in at least one).

    About one row in twenty is oversold against safety stock, so consumers meet the case where
    on_hand - occupied - safety is negative and sellable must clamp to zero.
    """
    rows: list[StockSeed] = []
    for sku in dict.fromkeys(skus):
        stocked = [w for w in warehouses if rng.random() < 0.85] or [rng.choice(list(warehouses))]
        for warehouse in warehouses:
            if warehouse not in stocked:
                continue
            on_hand = rng.randint(0, 500)
            occupied = rng.randint(0, on_hand // 3) if on_hand else 0
            safety = rng.choice((0, 5, 10, 20))
            if rng.random() < 0.05:
                occupied = on_hand  # fully reserved: sellable is 0 whatever the safety stock
            rows.append(StockSeed(sku, warehouse, on_hand, occupied, safety))
    return rows


def generate_cancel_applications(
    rng: random.Random, orders: Sequence[OrderSeed], *, now: datetime = DEFAULT_NOW
) -> list[CancelApplicationSeed]:
    """Applications for most cancelled orders plus about 1% of open ones (the seed's ratio).

    Open ones are in progress, so the Bloom-filter lookup has both finished and live rows.
    """
    rows: list[CancelApplicationSeed] = []
    for order in orders:
        if order.status == "CANCELLED" and rng.random() < 0.8:
            step, status = "REFUNDED", "DONE"
        elif order.status in ("PAID", "SENT_TO_WMS") and rng.random() < CANCEL_APPLICATION_RATE:
            step, status = rng.choice(
                (
                    ("SUBMITTED", "PROCESSING"),
                    ("CS_REVIEW", "PROCESSING"),
                    ("WMS_INTERCEPT", "PROCESSING"),
                )
            )
        elif order.status == "SHIPPED" and rng.random() < CANCEL_APPLICATION_RATE / 2:
            step, status = "WMS_INTERCEPT", "REJECTED"  # parcel already left: cancel refused
        else:
            continue
        created = _ms(min(order.updated_at, now))
        rows.append(
            CancelApplicationSeed(
                application_no="CA" + order.order_no.removeprefix("SO"),
                order_no=order.order_no,
                step=step,
                status=status,
                reason=rng.choice(_CANCEL_REASONS),
                created_at=created,
                updated_at=_ms(min(created + timedelta(seconds=rng.randint(0, 3600)), now)),
            )
        )
    return rows


# ------------------------------------------------------------------------------------- writers

_INSERT_ORDER = sa.text(
    "INSERT INTO oms_order (order_no, user_id, status, direct_ship, presale, warehouse_code, "
    "supplier_code, total_amount, discount_amount, coupon_amount, freight_amount, pay_amount, "
    "coupon_id, paid_at, created_at, updated_at) VALUES (:order_no, :user_id, :status, "
    ":direct_ship, :presale, :warehouse_code, :supplier_code, :total_amount, :discount_amount, "
    ":coupon_amount, :freight_amount, :pay_amount, :coupon_id, :paid_at, :created_at, :updated_at)"
)
_INSERT_ITEM = sa.text(
    "INSERT INTO oms_order_item (order_no, line_no, sku_code, sku_name, quantity, unit_price, "
    "line_amount, discount_amount, coupon_amount, freight_amount, pay_amount, created_at, "
    "updated_at) VALUES (:order_no, :line_no, :sku_code, :sku_name, :quantity, :unit_price, "
    ":line_amount, :discount_amount, :coupon_amount, :freight_amount, :pay_amount, :created_at, "
    ":updated_at)"
)
# Re-seeding a database replaces stock instead of failing on the (sku, warehouse) key; VALUES()
# rather than a row alias because MariaDB has no row alias syntax.
_UPSERT_STOCK = sa.text(
    "INSERT INTO wms_inv (sku_code, warehouse_code, on_hand, occupied, safety, version) "
    "VALUES (:sku_code, :warehouse_code, :on_hand, :occupied, :safety, :version) "
    "ON DUPLICATE KEY UPDATE on_hand = VALUES(on_hand), occupied = VALUES(occupied), "
    "safety = VALUES(safety), version = version + 1"
)
_INSERT_APPLICATION = sa.text(
    "INSERT INTO cs_cancel_application (application_no, order_no, step, status, reason, "
    "created_at, updated_at) VALUES (:application_no, :order_no, :step, :status, :reason, "
    ":created_at, :updated_at)"
)
_INSERT_PUSH = sa.text(
    "INSERT INTO oms_order_push (order_no, reverse_id, push_type, payload, status, parent_id, "
    "idempotency_key) VALUES (:order_no, :reverse_id, :push_type, :payload, :status, :parent_id, "
    ":idempotency_key)"
)


def _params(row: DataclassInstance, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Bind parameters from a seed dataclass: flags as 0/1, datetimes as naive UTC.

    Naive UTC is what the UTC session time zone (``make_engine``) stores unchanged.
    """
    params: dict[str, Any] = {}
    for f in fields(row):
        if f.name in drop:
            continue
        value = getattr(row, f.name)
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, datetime):
            value = value.astimezone(UTC).replace(tzinfo=None)
        params[f.name] = value
    return params


def insert_orders(conn: Connection, orders: Sequence[OrderSeed]) -> int:
    """Insert orders and their lines (one executemany each) in the caller's transaction."""
    if not orders:
        return 0
    conn.execute(_INSERT_ORDER, [_params(o, drop=("items",)) for o in orders])
    items: list[dict[str, Any]] = []
    for order in orders:
        # Lines are written with their order and not touched since.
        created = _params(order, drop=("items",))["created_at"]
        items.extend(
            {**_params(i), "created_at": created, "updated_at": created} for i in order.items
        )
    if items:
        conn.execute(_INSERT_ITEM, items)
    return len(orders)


def insert_stock(conn: Connection, rows: Sequence[StockSeed]) -> int:
    """Upsert ``wms_inv`` rows in the caller's transaction."""
    if rows:
        conn.execute(_UPSERT_STOCK, [_params(r) for r in rows])
    return len(rows)


def insert_cancel_applications(conn: Connection, rows: Sequence[CancelApplicationSeed]) -> int:
    """Insert ``cs_cancel_application`` rows in the caller's transaction."""
    if rows:
        conn.execute(_INSERT_APPLICATION, [_params(r) for r in rows])
    return len(rows)


# --------------------------------------------------------------------------------------- pushes

_PUSH_COLUMNS_MAX = {"order_no": 32, "push_type": 32, "idempotency_key": 128}


def make_push(
    order_no: str,
    push_type: str,
    payload: Mapping[str, Any] | None,
    *,
    reverse_id: int | None = None,
    parent_id: int | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """An ``oms_order_push`` row (as bind parameters) in status PENDING.

    The push type is not checked against the known ones on purpose: tests and replays need to write
    unknown types to see them fail cleanly downstream. Lengths are checked because a strict-mode
    server would otherwise reject the whole batch with a less helpful message.
    """
    key = idempotency_key or f"{push_type}:{order_no}:{uuid4().hex[:12]}"
    row: dict[str, Any] = {
        "order_no": order_no,
        "reverse_id": reverse_id,
        "push_type": push_type,
        "payload": None if payload is None else _payload_json(payload),
        "status": "PENDING",
        "parent_id": parent_id,
        "idempotency_key": key,
    }
    for column, limit in _PUSH_COLUMNS_MAX.items():
        value = row[column]
        if not value or len(value) > limit:
            raise ContractError(
                f"oms_order_push.{column} must be 1-{limit} characters, got {value!r}"
            )
    return row


def _payload_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: object) -> str:
    """Decimals as strings (exact, as the change events carry them), datetimes as ISO-8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable in a push payload")


def insert_pushes(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert rows built by ``make_push`` (one executemany) in the caller's transaction."""
    if not rows:
        return 0
    conn.execute(_INSERT_PUSH, [dict(r) for r in rows])
    return len(rows)


# ----------------------------------------------------------------------------------------- demo


def seed_demo(
    engine: Engine, orders: int = 200, seed: int = 7, *, now: datetime | None = None
) -> SeedSummary:
    """Fill a migrated database with ``orders`` orders, stock for their skus and some applications.

    Runs again without clashing: order numbers continue after the largest ``oms_order.id`` and
    stock is upserted. ``now`` defaults to the current time so the demo's orders look recent.
    """
    rng = random.Random(seed)
    clock = now or datetime.now(UTC)
    with engine.connect() as conn:
        last_id: int = conn.execute(
            sa.text("SELECT COALESCE(MAX(id), 0) FROM oms_order")
        ).scalar_one()
    order_rows = generate_orders(rng, orders, start_no=int(last_id) + 1, now=clock)
    stock_rows = generate_stock(rng, [p.sku_code for p in PRODUCTS])
    applications = generate_cancel_applications(rng, order_rows, now=clock)
    with engine.begin() as conn:
        insert_orders(conn, order_rows)
    with engine.begin() as conn:
        insert_stock(conn, stock_rows)
        insert_cancel_applications(conn, applications)
    summary = SeedSummary(
        seed=seed,
        orders=len(order_rows),
        order_items=sum(len(o.items) for o in order_rows),
        stock_rows=len(stock_rows),
        cancel_applications=len(applications),
        first_order_no=order_rows[0].order_no if order_rows else None,
        last_order_no=order_rows[-1].order_no if order_rows else None,
        direct_ship_orders=sum(o.direct_ship for o in order_rows),
        presale_orders=sum(o.presale for o in order_rows),
    )
    log.info(
        "demo data seeded",
        extra={
            "seed": seed,
            "orders": summary.orders,
            "order_items": summary.order_items,
            "stock_rows": summary.stock_rows,
            "cancel_applications": summary.cancel_applications,
        },
    )
    return summary
