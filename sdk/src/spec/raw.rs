//! The TOML-facing shape of `app.toml`: every key optional, unknown keys
//! denied, integers read as `i64` so that out-of-range values get a range
//! message rather than a type error. [`RawApp::into_spec`] applies defaults,
//! reads the string forms (`gpu`, `period`, `anchor`) and the two `retries`
//! forms, and reports every problem with its field path.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use serde::de::{self, value::MapAccessDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::{check_range, invalid, join, SpecError};
use super::{
    defaults, limits, parse_duration_ms, AppSpec, CatchUp, FunctionSpec, GpuRequest, ImageBuild, Mode, Overlap,
    RetryPolicy, Schedule,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    name: Option<String>,
    functions: Option<BTreeMap<String, RawFunction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    image: Option<RawImage>,
    command: Option<Vec<String>>,
    mode: Option<Mode>,
    cpu: Option<f64>,
    memory_mib: Option<i64>,
    gpu: Option<String>,
    min_containers: Option<i64>,
    max_containers: Option<i64>,
    buffer_containers: Option<i64>,
    scaledown_window_s: Option<i64>,
    concurrency: Option<i64>,
    timeout_s: Option<i64>,
    retries: Option<RawRetries>,
    env: Option<BTreeMap<String, String>>,
    schedule: Option<RawSchedule>,
    overlap: Option<Overlap>,
    catch_up: Option<CatchUp>,
    catch_up_window_s: Option<i64>,
    runs_kept: Option<i64>,
    writable_rootfs: Option<bool>,
    code: Option<String>,
}

/// `retries = 2` or `retries = { max = 2, ... }`. A hand-written visitor
/// rather than `#[serde(untagged)]`, so that an unknown key inside the table
/// keeps its path.
enum RawRetries {
    Count(i64),
    Table(RawRetryTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryTable {
    max: Option<i64>,
    initial_delay_ms: Option<i64>,
    backoff: Option<f64>,
}

impl<'de> Deserialize<'de> for RawRetries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RetriesVisitor;
        impl<'de> Visitor<'de> for RetriesVisitor {
            type Value = RawRetries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a table { max, initial_delay_ms, backoff }")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawRetries, E> {
                Ok(RawRetries::Count(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawRetries, E> {
                Ok(RawRetries::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRetries, A::Error> {
                RawRetryTable::deserialize(MapAccessDeserializer::new(map)).map(RawRetries::Table)
            }
        }
        deserializer.deserialize_any(RetriesVisitor)
    }
}

/// `image = "name"` or `image = { dockerfile = "Dockerfile", context = "." }` (built at
/// deploy). A hand-written visitor like [`RawRetries`], so a bad key keeps its path.
enum RawImage {
    Name(String),
    Build(RawBuild),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    dockerfile: Option<String>,
    context: Option<String>,
}

impl<'de> Deserialize<'de> for RawImage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ImageVisitor;
        impl<'de> Visitor<'de> for ImageVisitor {
            type Value = RawImage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an image name or a table { dockerfile, context }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawImage, E> {
                Ok(RawImage::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawImage, A::Error> {
                RawBuild::deserialize(MapAccessDeserializer::new(map)).map(RawImage::Build)
            }
        }
        deserializer.deserialize_any(ImageVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Option<String>,
    timezone: Option<String>,
    period: Option<String>,
    /// A TOML offset date-time or an RFC 3339 string.
    anchor: Option<toml::Value>,
}

/// An integer field: the default when absent, else range-checked.
fn int(path: &str, value: Option<i64>, default: u64, range: &RangeInclusive<u64>) -> Result<u64, SpecError> {
    match value {
        None => Ok(default),
        Some(v) => {
            check_range(path, v.into(), range)?;
            // In range, so non-negative.
            Ok(v.unsigned_abs())
        }
    }
}

/// Like [`int`] for `u32` fields; every `u32` range in [`limits`] fits.
fn int32(path: &str, value: Option<i64>, default: u32, range: &RangeInclusive<u64>) -> Result<u32, SpecError> {
    let v = int(path, value, default.into(), range)?;
    u32::try_from(v).map_err(|_| invalid(path, format!("must be <= {} (got {v})", u32::MAX)))
}

impl RawApp {
    /// Converts to the public form (defaults applied). Cross-field and
    /// content rules are left to [`AppSpec::validate`].
    pub(crate) fn into_spec(self) -> Result<AppSpec, SpecError> {
        let name = self.name.ok_or_else(|| invalid("name", "required"))?;
        let mut functions = BTreeMap::new();
        for (fname, raw) in self.functions.unwrap_or_default() {
            let path = join("functions", &fname);
            let spec = raw.into_spec(&path)?;
            functions.insert(fname, spec);
        }
        Ok(AppSpec { name, functions })
    }
}

impl RawFunction {
    fn into_spec(self, path: &str) -> Result<FunctionSpec, SpecError> {
        let at = |field: &str| join(path, field);
        let (image, build) = match self.image.ok_or_else(|| invalid(at("image"), "required"))? {
            RawImage::Name(name) => (name, None),
            RawImage::Build(b) => {
                let context = b.context.ok_or_else(|| invalid(join(&at("image"), "context"), "required"))?;
                let dockerfile = b.dockerfile.unwrap_or_else(|| "Dockerfile".to_string());
                (String::new(), Some(ImageBuild { dockerfile, context }))
            }
        };
        let command = self.command.ok_or_else(|| invalid(at("command"), "required"))?;
        let gpu = match self.gpu {
            None => None,
            Some(text) => Some(text.parse::<GpuRequest>().map_err(|m| invalid(at("gpu"), m))?),
        };
        let retries = match self.retries {
            None => RetryPolicy::default(),
            Some(raw) => raw.into_policy(&at("retries"))?,
        };
        let schedule = match self.schedule {
            None => None,
            Some(raw) => Some(raw.into_schedule(&at("schedule"))?),
        };
        Ok(FunctionSpec {
            image,
            build,
            writable_rootfs: self.writable_rootfs.unwrap_or(false),
            code: self.code,
            command,
            mode: self.mode.unwrap_or_default(),
            cpu: self.cpu.unwrap_or(defaults::CPU),
            memory_mib: int(&at("memory_mib"), self.memory_mib, defaults::MEMORY_MIB, &limits::MEMORY_MIB)?,
            gpu,
            min_containers: int32(
                &at("min_containers"),
                self.min_containers,
                defaults::MIN_CONTAINERS,
                &limits::MIN_CONTAINERS,
            )?,
            max_containers: int32(
                &at("max_containers"),
                self.max_containers,
                defaults::MAX_CONTAINERS,
                &limits::MAX_CONTAINERS,
            )?,
            buffer_containers: int32(
                &at("buffer_containers"),
                self.buffer_containers,
                defaults::BUFFER_CONTAINERS,
                &limits::BUFFER_CONTAINERS,
            )?,
            scaledown_window_s: int(
                &at("scaledown_window_s"),
                self.scaledown_window_s,
                defaults::SCALEDOWN_WINDOW_S,
                &limits::SCALEDOWN_WINDOW_S,
            )?,
            concurrency: int32(&at("concurrency"), self.concurrency, defaults::CONCURRENCY, &limits::CONCURRENCY)?,
            timeout_s: int(&at("timeout_s"), self.timeout_s, defaults::TIMEOUT_S, &limits::TIMEOUT_S)?,
            retries,
            env: self.env.unwrap_or_default(),
            schedule,
            overlap: self.overlap.unwrap_or_default(),
            catch_up: self.catch_up.unwrap_or_default(),
            catch_up_window_s: int(
                &at("catch_up_window_s"),
                self.catch_up_window_s,
                defaults::CATCH_UP_WINDOW_S,
                &limits::CATCH_UP_WINDOW_S,
            )?,
            runs_kept: int32(&at("runs_kept"), self.runs_kept, defaults::RUNS_KEPT, &limits::RUNS_KEPT)?,
        })
    }
}

impl RawRetries {
    fn into_policy(self, path: &str) -> Result<RetryPolicy, SpecError> {
        match self {
            RawRetries::Count(max) => {
                Ok(RetryPolicy::with_max(int32(path, Some(max), defaults::RETRY_MAX, &limits::RETRY_MAX)?))
            }
            RawRetries::Table(t) => Ok(RetryPolicy {
                max: int32(&join(path, "max"), t.max, defaults::RETRY_MAX, &limits::RETRY_MAX)?,
                initial_delay_ms: int(
                    &join(path, "initial_delay_ms"),
                    t.initial_delay_ms,
                    defaults::RETRY_INITIAL_DELAY_MS,
                    &limits::RETRY_INITIAL_DELAY_MS,
                )?,
                backoff: t.backoff.unwrap_or(defaults::RETRY_BACKOFF),
            }),
        }
    }
}

impl RawSchedule {
    fn into_schedule(self, path: &str) -> Result<Schedule, SpecError> {
        match (self.cron, self.period) {
            (Some(_), Some(_)) => Err(invalid(path, "set exactly one of `cron` or `period`, not both")),
            (None, None) => Err(invalid(path, "set exactly one of `cron` or `period`")),
            (Some(expr), None) => {
                if self.anchor.is_some() {
                    return Err(invalid(join(path, "anchor"), "only valid with `period`"));
                }
                let timezone = self.timezone.unwrap_or_else(|| defaults::TIMEZONE.to_string());
                Ok(Schedule::Cron { expr, timezone })
            }
            (None, Some(period)) => {
                if self.timezone.is_some() {
                    return Err(invalid(join(path, "timezone"), "only valid with `cron`"));
                }
                let every_ms = parse_duration_ms(&period).map_err(|m| invalid(join(path, "period"), m))?;
                let anchor = match self.anchor {
                    None => None,
                    Some(value) => Some(parse_anchor(&value).map_err(|m| invalid(join(path, "anchor"), m))?),
                };
                Ok(Schedule::Period { every_ms, anchor })
            }
        }
    }
}

/// An anchor: a TOML offset date-time (`2026-01-01T00:00:00Z`) or the same
/// as an RFC 3339 string. Local date-times (no offset) are refused.
fn parse_anchor(value: &toml::Value) -> Result<DateTime<Utc>, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => return Err(format!("expected an RFC 3339 date-time (got {})", other.type_str())),
    };
    DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        format!("expected an RFC 3339 date-time with an offset, e.g. 2026-01-01T00:00:00Z (got {text:?}: {e})")
    })
}
