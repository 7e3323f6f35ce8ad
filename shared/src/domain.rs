//! Domain primitives every resource is built from: ids, times and money.
//!
//! Each is a newtype whose constructor or deserializer enforces the data rules of the design,
//! so a value of the type is valid by construction: an [`Id`] is a ULID, a [`Timestamp`] is
//! RFC 3339 UTC, a [`MinorUnits`] amount is an integer (a JSON `10.5` is refused), and a
//! [`Currency`] is an ISO 4217 code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// What an [`Id`] looks like, as its OpenAPI schema says: exactly the strings
/// [`Id::from_str`] accepts. 26 characters of Crockford base32 in either case (ULIDs are
/// case-insensitive on input; output is upper case), the first at most `7`, since 26
/// characters hold 130 bits and a ULID is 128 (`ulid` would silently drop the excess).
pub const ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

/// The OpenAPI `pattern` of free text a client sends (names, references, tags, tokens):
/// at least one character that is not white space (values are trimmed, and an empty one is
/// refused) and no control characters (`crate::validation::no_control`). Attributes need a
/// literal, so `#[schema(pattern = ...)]` copies carry this text; a test in the docs
/// function checks every copy in the document equals it.
pub const VISIBLE_TEXT_PATTERN: &str =
    "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$";

/// A ULID: sortable by creation time, so a key of `Id`s is already newest-last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(ulid::Ulid);

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(ID_PATTERN))
            .description(Some("A ULID (26 characters of Crockford base32)."))
            .examples(["01JD3Q2W5Z8X9Y0A1B2C3D4E5F"])
            .into()
    }
}

impl ToSchema for Id {}

impl Id {
    /// A new id for an item created now.
    pub fn generate() -> Self {
        Self(ulid::Ulid::new())
    }

    /// When the id was generated (millisecond precision).
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }
}

/// Every ULID is an id: its 128 bits always print with a first character of `0`–`7`.
impl From<ulid::Ulid> for Id {
    fn from(ulid: ulid::Ulid) -> Self {
        Self(ulid)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Id {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // ULIDs are case-insensitive on input; the canonical form is upper case. A first
        // character above `7` would overflow 128 bits, which `ulid` drops without a word
        // (so `8…` would name the same id as `0…`): refused, as ID_PATTERN says.
        let in_range = s
            .as_bytes()
            .first()
            .is_some_and(|c| (b'0'..=b'7').contains(c));
        match ulid::Ulid::from_string(s) {
            Ok(ulid) if in_range => Ok(Self(ulid)),
            _ => {
                Err("must be a ULID (26 characters of Crockford base32, the first 0-7)".to_owned())
            }
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An instant in UTC, always written as RFC 3339 (`2026-11-25T19:17:21.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-11-25T19:17:21.123Z")]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }

    /// This instant moved by `duration` (saturating at the representable range).
    pub fn plus(&self, duration: time::Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(value: OffsetDateTime) -> Self {
        Self(value.to_offset(time::UtcOffset::UTC))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rfc3339 formatting of a UTC OffsetDateTime cannot fail for years 0..=9999.
        match self.0.format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from)
            .map_err(|_| "must be an RFC 3339 date-time, e.g. 2026-11-25T19:17:21Z".to_owned())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The largest amount of money anywhere in the API (see `crate::validation::MAX_AMOUNT`),
/// for the schemas below.
const MAX_AMOUNT: i64 = crate::validation::MAX_AMOUNT;

/// The OpenAPI schema of an amount a client sends that must be positive: a payment's
/// `amount`, a promise's `promise_amount` (`1..=MAX_AMOUNT` minor units, the bounds
/// `crate::validation::check_amount` enforces). Use as `#[schema(value_type = Amount)]`.
pub struct Amount;

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        amount_schema(1, "Minor units (cents for USD), 1 to 10^12.")
    }
}

impl ToSchema for Amount {}

/// The OpenAPI schema of an amount a client sends that may be 0: an account's
/// `original_balance`, balance filters (`0..=MAX_AMOUNT` minor units).
pub struct AmountOrZero;

impl PartialSchema for AmountOrZero {
    fn schema() -> RefOr<Schema> {
        amount_schema(0, "Minor units (cents for USD), 0 to 10^12.")
    }
}

impl ToSchema for AmountOrZero {}

fn amount_schema(min: i64, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(min))
        .maximum(Some(MAX_AMOUNT))
        .description(Some(description))
        .into()
}

/// The OpenAPI schema of every list's `limit` query parameter: an integer from 1 to
/// `crate::http::MAX_PAGE_LIMIT`, default `crate::http::DEFAULT_PAGE_LIMIT` (what
/// `crate::http::page_limit` accepts). Use as `#[param(value_type = Option<PageLimit>)]`.
pub struct PageLimit;

impl PartialSchema for PageLimit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(crate::http::MAX_PAGE_LIMIT))
            .default(Some(crate::http::DEFAULT_PAGE_LIMIT.into()))
            .description(Some("Items per page."))
            .into()
    }
}

impl ToSchema for PageLimit {}

/// An amount of money in the currency's minor unit (cents for USD). Deserialises only from a
/// JSON integer, so `10.5` or `"10"` is refused rather than rounded.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64, example = 12550)]
pub struct MinorUnits(pub i64);

impl MinorUnits {
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }
}

impl fmt::Display for MinorUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ISO 4217 currency code (`USD`, `EUR`, `JPY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

/// The schema lists every code [`Currency::from_str`] accepts: the variants of the same
/// `iso_currency` table, sorted. (It used to ask that table about each of the 26^3
/// three-letter strings, every time a schema named a currency: 36% of the docs function's
/// cold start, issue 17.)
impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        use iso_currency::IntoEnumIterator;
        let mut codes: Vec<&'static str> = iso_currency::Currency::iter()
            .map(|currency| currency.code())
            .collect();
        codes.sort_unstable();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes))
            .description(Some("An ISO 4217 currency code."))
            .examples(["USD"])
            .into()
    }
}

impl ToSchema for Currency {}

impl Currency {
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point of the minor unit (2 for USD, 0 for JPY).
    pub fn minor_digits(&self) -> u16 {
        self.0.exponent().unwrap_or(0)
    }
}

impl FromStr for Currency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        iso_currency::Currency::from_code(s)
            .map(Self)
            .ok_or_else(|| "must be an ISO 4217 currency code, e.g. USD".to_owned())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount with its currency: the only way money travels between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    pub amount: MinorUnits,
    pub currency: Currency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_and_rejects_garbage() {
        let id = Id::generate();
        let parsed: Id = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(
            id.to_string().to_lowercase().parse::<Id>().unwrap(),
            id,
            "ULIDs parse case-insensitively"
        );
        assert!("not-a-ulid".parse::<Id>().is_err());
        // 26 characters hold 130 bits: a first character above 7 is not a ULID (ulid alone
        // would wrap `8ZZ…` onto another id).
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<Id>().is_err());
        assert!("7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<Id>().is_ok());
        assert!(serde_json::from_str::<Id>("\"01J\"").is_err());
    }

    /// ID_PATTERN, checked character by character against what `Id::from_str` accepts (the
    /// workspace has no regex engine; the pattern is one class for the first character and
    /// one for the other 25).
    #[test]
    fn id_pattern_is_what_parsing_accepts() {
        assert_eq!(ID_PATTERN, "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$");
        let first = |c: char| ('0'..='7').contains(&c);
        let rest = |c: char| {
            c.is_ascii_alphanumeric() && !matches!(c.to_ascii_uppercase(), 'I' | 'L' | 'O' | 'U')
        };
        for c in (0u8..128).map(char::from) {
            let at_start: String = std::iter::once(c)
                .chain(std::iter::repeat_n('0', 25))
                .collect();
            assert_eq!(at_start.parse::<Id>().is_ok(), first(c), "{at_start:?}");
            let later: String = std::iter::repeat_n('0', 25)
                .chain(std::iter::once(c))
                .collect();
            assert_eq!(later.parse::<Id>().is_ok(), rest(c), "{later:?}");
        }
        assert!("0".repeat(25).parse::<Id>().is_err());
        assert!("0".repeat(27).parse::<Id>().is_err());
    }

    #[test]
    fn ids_sort_by_creation() {
        let first = Id::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = Id::generate();
        assert!(first < second);
        assert!(first.to_string() < second.to_string());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let parsed: Timestamp = "2026-11-25T20:17:21+01:00".parse().unwrap();
        assert_eq!(parsed.to_string(), "2026-11-25T19:17:21Z");
        assert!("25/11/2026".parse::<Timestamp>().is_err());
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, "\"2026-11-25T19:17:21Z\"");
    }

    #[test]
    fn money_is_integer_minor_units_only() {
        assert_eq!(
            serde_json::from_str::<MinorUnits>("1050").unwrap(),
            MinorUnits(1050)
        );
        assert!(serde_json::from_str::<MinorUnits>("10.5").is_err());
        assert!(serde_json::from_str::<MinorUnits>("\"10\"").is_err());
        assert!(serde_json::from_str::<MinorUnits>("1e3").is_err());
        assert_eq!(MinorUnits(i64::MAX).checked_add(MinorUnits(1)), None);
    }

    #[test]
    fn currency_is_iso_4217() {
        let usd: Currency = "USD".parse().unwrap();
        assert_eq!(usd.minor_digits(), 2);
        assert_eq!("JPY".parse::<Currency>().unwrap().minor_digits(), 0);
        assert!("XXY".parse::<Currency>().is_err());
        assert!("usd".parse::<Currency>().is_err(), "codes are upper case");
        let schema = serde_json::to_value(Currency::schema()).unwrap();
        let codes = schema["enum"].as_array().unwrap();
        assert!(codes.len() > 150, "{}", codes.len());
        for code in codes {
            assert!(code.as_str().unwrap().parse::<Currency>().is_ok(), "{code}");
        }
        assert!(codes.contains(&"JPY".into()) && !codes.contains(&"XXY".into()));
        // Exactly the codes parsing accepts: every three-letter string asked.
        let accepted: Vec<serde_json::Value> = (0..26 * 26 * 26)
            .map(|i: u32| {
                let letter = |n: u32| char::from(b'A' + (n % 26) as u8);
                format!("{}{}{}", letter(i / 676), letter(i / 26), letter(i))
            })
            .filter(|code| code.parse::<Currency>().is_ok())
            .map(serde_json::Value::from)
            .collect();
        assert_eq!(codes, &accepted);
        let money: Money = serde_json::from_str(r#"{"amount":100,"currency":"EUR"}"#).unwrap();
        assert_eq!(money.currency.code(), "EUR");
    }
}
