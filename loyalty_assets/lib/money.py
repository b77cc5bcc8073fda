"""Money as integer minor units beside an ISO 4217 code; Decimal only, never float (RULES.md §3)."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from loyalty_assets.lib.records import RecordError

# ISO 4217 minor-unit digits for every currency a shop is likely to use. Unknown codes are an
# error rather than a guess: a wrong exponent would scale points by 100.
_DIGITS_0 = {
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "ISK",
    "JPY",
    "KMF",
    "KRW",
    "PYG",
    "RWF",
    "UGX",
    "UYI",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
}
_DIGITS_3 = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_DIGITS_2 = set(
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF "
    "CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL "
    "HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP "
    "MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
    "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS "
    "VES WST XCD YER ZAR ZMW ZWL".split()
)


class MoneyError(ValueError):
    """A source amount that cannot be turned into money: carries a quarantine reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def currency_digits(code: str) -> int:
    code = (code or "").upper()
    if code in _DIGITS_2:
        return 2
    if code in _DIGITS_0:
        return 0
    if code in _DIGITS_3:
        return 3
    raise MoneyError("unknown_currency", f"unknown currency code {code!r}")


def to_decimal(value: object, field: str) -> Decimal:
    """Parse a source amount; bools, floats and text that is not a number are refused."""
    if value is None:
        return Decimal(0)
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError("bad_amount", f"{field} is {type(value).__name__} {value!r}, not an exact number")
    try:
        d = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise MoneyError("bad_amount", f"{field} is not a number: {value!r}") from exc
    if not d.is_finite():
        raise MoneyError("bad_amount", f"{field} is not a finite number: {value!r}")
    return d


_SCALE = {0: Decimal(1), 2: Decimal(100), 3: Decimal(1000)}  # 10 ** digits, made once (7 calls a mapped version)
_ONE = Decimal(1)
# the largest amount a record may carry, in minor units: sums of a few of them, times a rate or a
# multiplier, stay within the warehouse's BIGINT columns (one beyond it aborted the whole normalize)
MAX_MINOR = 10**15


def to_minor(amount: Decimal, currency: str) -> int:
    """Round half-up to the currency's minor units once, as an integer."""
    try:
        minor = int((amount * _SCALE[currency_digits(currency)]).quantize(_ONE, rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:  # beyond Decimal's precision (1e30): a bad amount, not a malformed record
        raise RecordError("bad_amount", f"amount {amount} {currency} is out of range") from exc
    if abs(minor) > MAX_MINOR:
        raise RecordError("bad_amount", f"amount {amount} {currency} is out of range (over {MAX_MINOR} minor units)")
    return minor


def convert_minor(minor: int, from_currency: str, rate: Decimal, to_currency: str) -> int:
    """Convert minor units with `rate` (to-currency per from-currency unit), rounded half-up once."""
    major = Decimal(minor) / (Decimal(10) ** currency_digits(from_currency))
    return to_minor(major * rate, to_currency)


@dataclass(frozen=True)
class FxTable:
    """Daily rates to the program currency; the latest rate on or before a day applies."""

    rates: dict[str, list[tuple[dt.date, Decimal]]]

    @classmethod
    def load(cls, path: Path | None) -> FxTable:
        rates: dict[str, list[tuple[dt.date, Decimal]]] = {}
        if path is None or not Path(path).exists():
            return cls(rates)
        with open(path, newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    day = dt.date.fromisoformat(row["date"].strip())
                    cur = row["currency"].strip().upper()
                    rate = Decimal(row["rate_to_program"].strip())
                except (KeyError, ValueError, InvalidOperation, AttributeError) as exc:
                    raise ValueError(f"{path}:{n}: expected date,currency,rate_to_program: {row}") from exc
                if rate <= 0:
                    raise ValueError(f"{path}:{n}: rate_to_program must be positive, got {rate}")
                rates.setdefault(cur, []).append((day, rate))
        for series in rates.values():
            series.sort()
        return cls(rates)

    def merged(self, other: FxTable) -> FxTable:
        """Rates of both tables; where both have a day, this table's rate wins."""
        rates = {c: dict(series) for c, series in other.rates.items()}
        for c, series in self.rates.items():
            rates.setdefault(c, {}).update(dict(series))
        return FxTable({c: sorted(days.items()) for c, days in rates.items()})

    def rate(self, currency: str, day: dt.date) -> Decimal | None:
        best = None
        for d, r in self.rates.get(currency.upper(), []):
            if d <= day:
                best = r
            else:
                break
        return best
