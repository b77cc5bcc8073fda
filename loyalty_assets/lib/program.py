"""The program configuration (RULES.md §1): one validated YAML file per program.

Validation is strict (unknown keys are errors) because a typo in a loyalty rule silently changes
what customers are owed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

DEFAULT_PROGRAM_FILE = Path(__file__).resolve().parent.parent / "program.yaml"


def _no_bool(v: object) -> object:
    if isinstance(v, bool):  # pydantic takes `true` for 1 day
        raise ValueError("must be a whole number, not true/false")
    return v


Count = Annotated[int, BeforeValidator(_no_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Earning(_Strict):
    points_per_unit: Decimal = Decimal("1")
    rounding: Literal["floor", "half_up"] = "floor"
    trigger: Literal["paid", "fulfilled"] = "paid"
    pending_days: Count = Field(0, ge=0)
    min_eligible: Decimal = Field(Decimal("0"), ge=0)
    store_multipliers: dict[str, Decimal] = Field(default_factory=dict)
    excluded_product_types: list[str] = Field(
        default_factory=lambda: ["giftcard", "gift_card", "giftcertificate"]
    )

    @field_validator("points_per_unit")
    @classmethod
    def _positive_rate(cls, v: Decimal) -> Decimal:
        if v < 0:
            raise ValueError("must be >= 0")
        return _six_places(v, "points_per_unit")

    @field_validator("store_multipliers")
    @classmethod
    def _positive_multipliers(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for key, m in v.items():
            if m < 0:
                raise ValueError(f"multiplier for {key!r} must be >= 0")
            _six_places(m, f"multiplier for {key!r}")
        return v


def _six_places(v: Decimal, name: str) -> Decimal:
    """The journal records rate and multiplier as DECIMAL(18, 6) (RULES.md §1: the rate an order earned
    with is kept): more places would be cut there and the entries could not be explained by them."""
    if not v.is_finite() or v >= Decimal("1e12"):
        raise ValueError(f"{name} {v} is not a number below 10^12")
    if v != v.quantize(Decimal("0.000001")):
        raise ValueError(f"{name} {v} has more than 6 decimal places")
    return v


class TierLevel(_Strict):
    name: str = Field(min_length=1)
    # the tier metric is kept to 3 decimal places below 10^15 (DECIMAL(18, 3)): a threshold finer or larger
    # was rounded (500.0004 reached by 500.00) or stopped every tier evaluation
    threshold: Decimal = Field(ge=0, lt=Decimal(10) ** 15, decimal_places=3)


class Tiers(_Strict):
    metric: Literal["spend", "points"] = "spend"
    period: Literal["lifetime", "calendar_year", "rolling_365"] = "calendar_year"
    levels: list[TierLevel] = Field(
        default_factory=lambda: [
            TierLevel(name="Bronze", threshold=Decimal("0")),
            TierLevel(name="Silver", threshold=Decimal("500")),
            TierLevel(name="Gold", threshold=Decimal("1500")),
        ]
    )
    retention: Literal["none", "next_period"] = "next_period"

    @field_validator("levels")
    @classmethod
    def _ordered_levels(cls, v: list[TierLevel]) -> list[TierLevel]:
        if not v:
            raise ValueError("at least one level is required")
        if v[0].threshold != 0:
            raise ValueError("the first level's threshold must be 0")
        for a, b in zip(v, v[1:], strict=False):
            if b.threshold <= a.threshold:
                raise ValueError(
                    f"thresholds must increase: {a.name} {a.threshold} then {b.name} {b.threshold}"
                )
        if len({lv.name for lv in v}) != len(v):
            raise ValueError("level names must be unique")
        return v


class Referrals(_Strict):
    referrer_points: Count = Field(500, ge=0)


class Expiry(_Strict):
    inactivity_days: Count | None = Field(None, gt=0)


class Adjustments(_Strict):
    max_abs_points: Count = Field(10000, gt=0)


class Identity(_Strict):
    match_phone: bool = False
    must_link: list[tuple[str, str]] = Field(default_factory=list)
    cannot_link: list[tuple[str, str]] = Field(default_factory=list)

    @field_validator("must_link", "cannot_link")
    @classmethod
    def _identity_keys(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Keys as the identity graph writes them (RULES.md §8): an e-mail trimmed and lower-cased, a
        phone `tel:+<E.164>`, else `<platform>:<tenant>:<id>`. Anything else matched no record (a
        mixed-case e-mail linked nothing) or stopped every identity run (a key without its tenant)."""
        out = []
        for pair in pairs:
            keys = []
            for raw in pair:
                key = raw.strip()
                if key.startswith("tel:"):
                    if not re.fullmatch(r"tel:\+[1-9]\d{6,14}", key):
                        raise ValueError(f"{raw!r} is not a phone key tel:+<E.164>")
                elif "@" in key and key.count(":") < 2:
                    key = key.lower()
                elif key.count(":") < 2 or not all(part.strip() for part in key.split(":", 2)):
                    raise ValueError(f"{raw!r} is not an identity key (an e-mail, tel:+<E.164> or <platform>:<tenant>:<id>)")
                keys.append(key)
            out.append((keys[0], keys[1]))
        return out


class Ingest(_Strict):
    safety_lag_seconds: Count = Field(60, ge=0)
    refund_wait_days: Count = Field(7, ge=0)


OWNED_ATTRIBUTES = {
    # attribute: default owner (RULES.md §9)
    "points": "loyalty_assets",
    "tier": "loyalty_assets",
    "redemptions": "loyalty_platform",
    "loyalty_customer_ids": "loyalty_platform",
    "referral_links": "loyalty_platform",
    "consent": "salesforce",
    "names": "salesforce",
    "orders": "commerce_platform",
}


class Sync(_Strict):
    """Who owns which attribute (RULES.md §9): the owner's value wins a disagreement."""

    owners: dict[str, Literal["loyalty_assets", "loyalty_platform", "salesforce", "commerce_platform"]] = Field(
        default_factory=lambda: dict(OWNED_ATTRIBUTES)
    )

    @field_validator("owners")
    @classmethod
    def _known_attributes(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(OWNED_ATTRIBUTES))
        if unknown:
            raise ValueError(f"unknown attribute(s) {unknown}; known: {sorted(OWNED_ATTRIBUTES)}")
        return {**OWNED_ATTRIBUTES, **v}


class SalesforceMapping(_Strict):
    """How ledger entries and tier changes reach Salesforce (CONTRACT.md §5)."""

    # RULES.md §9: Loyalty_Transaction__c records, Loyalty_Event__e platform events, or Task activities
    # (upserted by their Transaction_Id__c, WhoId the member's Contact) on the member's activity timeline
    transactions_as: Literal["custom_object", "platform_event", "task"] = "custom_object"
    # RULES.md §9: a member's Lead is marked converted through a configured status field (the REST
    # API has no lead conversion call)
    lead_status_field: str = Field("Status", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    lead_converted_status: str = Field("Closed - Converted", min_length=1)
    # CONTRACT.md §5 "Person Account when enabled": a member past its first earn is a Person Account
    # (upserted on Account by Loyalty_Member_Id__pc, its person Contact's external id), not a Contact;
    # created with the Account record type of this DeveloperName
    person_accounts: bool = False
    person_account_record_type: str = Field("PersonAccount", min_length=1)


class Program(_Strict):
    program_id: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    timezone: str = "UTC"
    start_date: dt.date = dt.date(2024, 1, 1)
    earning: Earning = Field(default_factory=Earning)
    tiers: Tiers = Field(default_factory=Tiers)
    referrals: Referrals = Field(default_factory=Referrals)
    expiry: Expiry = Field(default_factory=Expiry)
    adjustments: Adjustments = Field(default_factory=Adjustments)
    identity: Identity = Field(default_factory=Identity)
    ingest: Ingest = Field(default_factory=Ingest)
    sync: Sync = Field(default_factory=Sync)
    salesforce: SalesforceMapping = Field(default_factory=SalesforceMapping)
    fx: str = "data/fx_rates.csv"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a folder of zones ("America")
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v

    @field_validator("currency")
    @classmethod
    def _currency_known(cls, v: str) -> str:
        from loyalty_assets.lib.money import currency_digits

        currency_digits(v)
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def canonical_json(self) -> str:
        """Stable text of the validated config: the input of the rule version hash."""
        return json.dumps(_canonical(self.model_dump(mode="python")), sort_keys=True, separators=(",", ":"))

    @property
    def rule_version(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    def multiplier(self, store_key: str) -> Decimal:
        return self.earning.store_multipliers.get(store_key, Decimal("1"))

    def fx_path(self) -> Path:
        """The FX table: LOYALTY_FX_FILE, else the program's `fx` (absent by default: no rates). A file
        named by the variable must exist: a mistyped path would quarantine every foreign-currency
        order as no_fx_rate without a word."""
        explicit = os.environ.get("LOYALTY_FX_FILE")
        if explicit and not Path(explicit).is_file():
            raise ProgramConfigError(f"LOYALTY_FX_FILE: no such file: {explicit}")
        return Path(explicit or self.fx)


def _canonical(value: object) -> object:
    """JSON-ready with numbers normalized, so '1.0' and '1' give the same rule version."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class ProgramConfigError(ValueError):
    """The program file is missing, not YAML, or fails validation; the message names the key."""


class _Loader(yaml.SafeLoader):
    """Dates stay text for the model to parse: YAML's own parse of `2024-02-30` failed with no key named."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_program(text: str, source: str = "<program>") -> Program:
    try:
        data = yaml.load(text, Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        raise ProgramConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProgramConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return Program.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg}")
        raise ProgramConfigError(f"{source}: invalid program configuration: " + "; ".join(problems)) from exc


def program_file() -> Path:
    return Path(os.environ.get("LOYALTY_PROGRAM_FILE") or DEFAULT_PROGRAM_FILE)


@cache
def _load(path: str, mtime: float) -> Program:
    return parse_program(Path(path).read_text(), source=path)


def load_program(path: Path | None = None) -> Program:
    """Load the program chosen by LOYALTY_PROGRAM_FILE (or the packaged default)."""
    path = path or program_file()
    if not path.exists():
        raise ProgramConfigError(f"program file not found: {path} (LOYALTY_PROGRAM_FILE)")
    return _load(str(path), path.stat().st_mtime)
