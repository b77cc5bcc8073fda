"""Program configuration (RULES.md §1): defaults, LOYALTY_PROGRAM_FILE, strict validation naming the
key, and a rule version that changes exactly when the validated configuration does."""

from decimal import Decimal

import pytest

from loyalty_assets.lib.program import ProgramConfigError, load_program, parse_program


def test_defaults_match_rules_table():
    p = parse_program("{}")
    assert (p.program_id, p.currency, p.timezone, str(p.start_date)) == ("default", "USD", "UTC", "2024-01-01")
    assert p.earning.points_per_unit == Decimal("1") and p.earning.rounding == "floor"
    assert p.earning.trigger == "paid" and p.earning.pending_days == 0 and p.earning.min_eligible == 0
    assert p.earning.excluded_product_types == ["giftcard", "gift_card", "giftcertificate"]
    assert [(lv.name, lv.threshold) for lv in p.tiers.levels] == [("Bronze", 0), ("Silver", 500), ("Gold", 1500)]
    assert (p.tiers.metric, p.tiers.period, p.tiers.retention) == ("spend", "calendar_year", "next_period")
    assert p.referrals.referrer_points == 500 and p.expiry.inactivity_days is None
    assert p.adjustments.max_abs_points == 10000 and p.identity.match_phone is False
    assert p.ingest.safety_lag_seconds == 60 and p.ingest.refund_wait_days == 7
    assert p.fx == "data/fx_rates.csv"


def test_shipped_default_file_equals_the_documented_defaults():
    assert load_program().canonical_json() == parse_program("{}").canonical_json()


def test_unknown_key_is_named():
    with pytest.raises(ProgramConfigError, match=r"earning\.points_per_dollar: unknown key"):
        parse_program("earning:\n  points_per_dollar: 2\n")


@pytest.mark.parametrize(
    "text, key",
    [
        ("earning:\n  rounding: ceil\n", "earning.rounding"),
        ("earning:\n  pending_days: -1\n", "earning.pending_days"),
        ("currency: usd\n", "currency"),
        ("timezone: Mars/Base\n", "timezone"),
        ("timezone: America\n", "timezone"),  # a folder of zones, not one
        ("tiers:\n  levels: [{name: A, threshold: 10}]\n", "tiers.levels"),
        ("earning:\n  points_per_unit: lots\n", "earning.points_per_unit"),
        # the journal keeps rate and multiplier with 6 decimal places: more would be cut there
        ("earning:\n  points_per_unit: 0.1234567\n", "earning.points_per_unit"),
        ("earning:\n  store_multipliers: {'magento:default:1': 1.0000001}\n", "earning.store_multipliers"),
        ("salesforce:\n  lead_status_field: 'Status; DROP'\n", "salesforce.lead_status_field"),
        # a date YAML itself would refuse, a currency no ISO table knows, a flag for a count
        ("start_date: 2024-02-30\n", "start_date"),
        ("currency: XYZ\n", "currency"),
        ("earning:\n  pending_days: true\n", "earning.pending_days"),
        ("expiry:\n  inactivity_days: yes\n", "expiry.inactivity_days"),
        # the tier metric has 3 decimal places below 10^15: a finer threshold was reached by less (500.00
        # reached 500.0004), a larger one stopped every tier evaluation
        ("tiers:\n  levels: [{name: A, threshold: 0}, {name: B, threshold: 500.0004}]\n", "tiers.levels.1.threshold"),
        ("tiers:\n  levels: [{name: A, threshold: 0}, {name: B, threshold: 1e16}]\n", "tiers.levels.1.threshold"),
    ],
)
def test_bad_value_is_named(text, key):
    with pytest.raises(ProgramConfigError) as err:
        parse_program(text)
    assert f"{key}:" in str(err.value)


def test_program_file_env_var(tmp_path, monkeypatch):
    f = tmp_path / "p.yaml"
    f.write_text("program_id: shop2\ncurrency: EUR\nearning:\n  points_per_unit: '2.5'\n")
    monkeypatch.setenv("LOYALTY_PROGRAM_FILE", str(f))
    p = load_program()
    assert (p.program_id, p.currency, p.earning.points_per_unit) == ("shop2", "EUR", Decimal("2.5"))


def test_missing_program_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LOYALTY_PROGRAM_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ProgramConfigError, match="LOYALTY_PROGRAM_FILE"):
        load_program()


def test_rule_version_is_stable_and_sensitive():
    a, b = parse_program("{}"), parse_program("earning: {points_per_unit: '1.0'}")
    assert a.rule_version == parse_program("{}").rule_version and len(a.rule_version) == 12
    assert a.rule_version != parse_program("earning: {points_per_unit: '2'}").rule_version
    assert b.rule_version == a.rule_version  # same value written differently: same rules
