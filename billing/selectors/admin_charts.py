"""Charts for the admin's finance dashboard, drawn on the server as inline SVG (no JS, no CDN)."""
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from billing.selectors.finance import AGING_BUCKETS

BUCKET_LABELS = {
    "current": "Current",
    "1-30": "1-30 days",
    "31-60": "31-60 days",
    "61-90": "61-90 days",
    "90+": "90+ days",
}

_LABEL_WIDTH = 90
_BAR_AREA_WIDTH = 320
_VALUE_WIDTH = 130
_ROW_HEIGHT = 28
_BAR_HEIGHT = 18


def cents_display(cents: int) -> str:
    """Minor units as a decimal amount with thousands separators, on integers only: 123456 -> '1,234.56'."""
    sign = "-" if cents < 0 else ""
    units, hundredths = divmod(abs(cents), 100)
    return f"{sign}{units:,}.{hundredths:02d}"


def aging_bar_chart_svg(*, aging: dict[str, int], currency: str) -> SafeString:
    """A horizontal bar per aging bucket, bar lengths proportional to the outstanding cents."""
    largest = max((max(aging.get(bucket, 0), 0) for bucket in AGING_BUCKETS), default=0)
    rows = []
    for index, bucket in enumerate(AGING_BUCKETS):
        cents = aging.get(bucket, 0)
        length = max(cents, 0) * _BAR_AREA_WIDTH // largest if largest else 0
        top = index * _ROW_HEIGHT
        rows.append(
            (
                bucket,
                top + _BAR_HEIGHT - 4,
                BUCKET_LABELS[bucket],
                _LABEL_WIDTH,
                top,
                length,
                _BAR_HEIGHT,
                f"{BUCKET_LABELS[bucket]}: {cents_display(cents)} {currency}",
                _LABEL_WIDTH + length + 6,
                top + _BAR_HEIGHT - 4,
                cents_display(cents),
            )
        )
    bars = format_html_join(
        "\n",
        '<g data-bucket="{}"><text x="0" y="{}" font-size="12">{}</text>'
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#417690"><title>{}</title></rect>'
        '<text x="{}" y="{}" font-size="12">{}</text></g>',
        rows,
    )
    width = _LABEL_WIDTH + _BAR_AREA_WIDTH + _VALUE_WIDTH
    height = len(AGING_BUCKETS) * _ROW_HEIGHT
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="aging-chart" role="img" width="{}" height="{}" '
        'viewBox="0 0 {} {}" aria-label="{}">{}</svg>',
        width,
        height,
        width,
        height,
        f"Receivables aging in {currency}",
        bars,
    )
