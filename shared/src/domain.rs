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
use utoipa::ToSchema;

/// A ULID: sortable by creation time, so a key of `Id`s is already newest-last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, example = "01JD3Q2W5Z8X9Y0A1B2C3D4E5F")]
pub struct Id(ulid::Ulid);

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

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Id {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // ULIDs are case-insensitive on input; the canonical form is upper case.
        ulid::Ulid::from_string(s)
            .map(Self)
            .map_err(|_| "must be a ULID (26 characters of Crockford base32)".to_owned())
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ToSchema)]
#[schema(value_type = String, example = "USD")]
pub struct Currency(iso_currency::Currency);

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
        assert!(serde_json::from_str::<Id>("\"01J\"").is_err());
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
        let money: Money = serde_json::from_str(r#"{"amount":100,"currency":"EUR"}"#).unwrap();
        assert_eq!(money.currency.code(), "EUR");
    }
}
