-- Macros of the set-based Magento mappings (magento_orders.sql, magento_creditmemos.sql): each
-- field's JSON type and text are read once; the macros take both.

-- The type and text of a JSON value json_transform gave as JSON text: the type follows from the
-- first character, as json_type() tells it, and a number or literal is its own text; only a string
-- is parsed again (three times faster than json_type() and ->> at 1.7M versions x 18 fields). An
-- integer beyond 64 bits, kept as its digits, reads as an integer here: its text is str() of
-- Python's int, and no amount takes more than 9 integer digits.
CREATE OR REPLACE TEMP MACRO mg_type(v) AS CASE WHEN v IS NULL THEN 'NULL' ELSE CASE left(CAST(v AS VARCHAR), 1)
    WHEN '"' THEN 'VARCHAR' WHEN '{' THEN 'OBJECT' WHEN '[' THEN 'ARRAY' WHEN 't' THEN 'BOOLEAN' WHEN 'f' THEN 'BOOLEAN'
    WHEN 'n' THEN 'NULL'
    ELSE CASE WHEN contains(CAST(v AS VARCHAR), '.') OR contains(CAST(v AS VARCHAR), 'e') OR contains(CAST(v AS VARCHAR), 'E')
              THEN 'DOUBLE' WHEN starts_with(CAST(v AS VARCHAR), '-') THEN 'BIGINT' ELSE 'UBIGINT' END END END;

CREATE OR REPLACE TEMP MACRO mg_json_text(v) AS
    CASE WHEN left(CAST(v AS VARCHAR), 1) = '"' THEN v ->> '$' ELSE CAST(v AS VARCHAR) END;

CREATE OR REPLACE TEMP MACRO mg_text(t, s) AS CASE WHEN t = 'VARCHAR' THEN s END;

CREATE OR REPLACE TEMP MACRO mg_ascii(s) AS regexp_full_match(s, '[ -~]*');

-- An amount as Python reads it (Decimal), where SQL can tell it exactly; NULL sends the version to
-- Python. A string is its own exact text. A JSON number was read as a double, whose text p may
-- differ from the text r the shop sent (0.0049999999999999999 reads 0.005): taken only when p
-- matches `number` (normalize.py: at most 9 integer digits, no more decimals than the currency has,
-- so p lies on its grid). Then |p - r| <= one ulp < 2.4e-7, so sums of three amounts stay within
-- 1e-6 of a grid point and round to the same minor unit as Python's exact r, far from any half
-- unit; and a negative r never reads as p = 0 (a '-0.0' goes to Python, which quarantines it).
-- Amounts are DECIMAL(18, 4), at most 9 integer digits and 4 decimals (else Python): the eligible
-- sum of three, times 10^digits, stays within 64 bits. DECIMAL(38, 10) cost 1 s more at 1.7M
-- versions, in its 128-bit rounding.
CREATE OR REPLACE TEMP MACRO mg_amount(t, s, number) AS CASE
    WHEN t = 'NULL' THEN CAST(0 AS DECIMAL(18, 4))
    WHEN t IN ('UBIGINT', 'BIGINT', 'DOUBLE') AND regexp_full_match(s, number) AND s <> '-0.0'
        THEN CAST(s AS DECIMAL(18, 4))
    WHEN t = 'VARCHAR' AND regexp_full_match(s, ' *-?\d{1,9}(\.\d{1,4})? *')
        THEN CAST(trim(s) AS DECIMAL(18, 4)) END;

-- No ASCII check: when the first 19 characters after trim() have this shape, Python's
-- value.strip()[:19] is the same text (it starts with a digit and holds no other whitespace).
-- try_strptime, not TRY_CAST: NULL for a day the calendar lacks all the same, at a third of the cost
-- (0.14 against 0.05 s for 1.7M versions). The UTC instant from its microseconds, not timezone('UTC',
-- ...): the same value without a time zone lookup (0.05 s of each field at 1.7M versions).
CREATE OR REPLACE TEMP MACRO mg_time(t, s) AS CASE
    WHEN t = 'VARCHAR'
         AND regexp_full_match(substr(trim(s), 1, 19), '[1-9]\d{3}-\d{2}-\d{2} ([01]\d|2[0-3]):[0-5]\d:[0-5]\d')
        THEN make_timestamptz(epoch_us(try_strptime(substr(trim(s), 1, 19), '%Y-%m-%d %H:%M:%S'))) END;

CREATE OR REPLACE TEMP MACRO mg_email(s) AS CASE WHEN contains(lower(trim(s)), '@') THEN lower(trim(s)) END;

CREATE OR REPLACE TEMP MACRO mg_scalar_text(t, s) AS CASE   -- str(value) of a string or an integer
    WHEN t IN ('VARCHAR', 'UBIGINT', 'BIGINT') THEN s END;

-- a JSON object (the column holds valid JSON), told from its first character, else from its first
-- 64 after leading spaces: ltrim() of the whole payload copied it (0.3 s of CPU at 1.7M versions),
-- and of the first 64 characters of every payload 0.07 s; an object after other whitespace, or more
-- spaces, is left to Python, which maps it the same
CREATE OR REPLACE TEMP MACRO mg_plain_object(payload) AS
    starts_with(CAST(payload AS VARCHAR), '{') OR starts_with(ltrim(left(CAST(payload AS VARCHAR), 64)), '{');
