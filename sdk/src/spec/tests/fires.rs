//! `Schedule::next_fires`: cron in UTC and in DST zones of both hemispheres
//! (incl. Lord Howe's half-hour shift), weekday mapping, month ends, leap days,
//! 6-field cron with seconds, the @-forms, period anchoring.

use chrono::{DateTime, TimeZone, Utc};

use super::super::Schedule;

/// A UTC instant from its parts.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// An instant from an RFC 3339 string (with offset), for readable expectations.
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn cron(expr: &str, timezone: &str) -> Schedule {
    Schedule::Cron { expr: expr.into(), timezone: timezone.into() }
}

/// An anchor that the cron cases must ignore.
fn unused() -> DateTime<Utc> {
    utc(1999, 1, 1, 0, 0, 0)
}

/// (expr, timezone, after, expected fires as RFC 3339)
const CRON_CASES: &[(&str, &str, &str, &[&str])] = &[
    // Plain UTC, strictly after `after`.
    (
        "*/5 * * * *",
        "UTC",
        "2026-03-01T10:02:30Z",
        &["2026-03-01T10:05:00Z", "2026-03-01T10:10:00Z", "2026-03-01T10:15:00Z"],
    ),
    ("*/5 * * * *", "UTC", "2026-03-01T10:05:00Z", &["2026-03-01T10:10:00Z", "2026-03-01T10:15:00Z"]),
    ("*/5 * * * *", "UTC", "2026-03-01T10:04:59.999Z", &["2026-03-01T10:05:00Z"]),
    ("0 0 1 * *", "UTC", "2026-01-15T00:00:00Z", &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
    ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", &["2028-02-29T00:00:00Z"]),
    ("@hourly", "UTC", "2026-03-01T10:00:00Z", &["2026-03-01T11:00:00Z"]),
    // A zone without DST.
    ("0 9 * * *", "Asia/Tokyo", "2026-03-01T00:00:00Z", &["2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"]),
    // Weekdays: 2026-03-01 is a Sunday. 0, 7 and SUN are Sunday; 1 and MON Monday.
    ("0 12 * * 0", "UTC", "2026-02-25T00:00:00Z", &["2026-03-01T12:00:00Z", "2026-03-08T12:00:00Z"]),
    ("0 12 * * 7", "UTC", "2026-02-25T00:00:00Z", &["2026-03-01T12:00:00Z", "2026-03-08T12:00:00Z"]),
    ("0 12 * * SUN", "UTC", "2026-02-25T00:00:00Z", &["2026-03-01T12:00:00Z"]),
    ("0 12 * * 1", "UTC", "2026-02-25T00:00:00Z", &["2026-03-02T12:00:00Z", "2026-03-09T12:00:00Z"]),
    ("0 12 * * mon", "UTC", "2026-02-25T00:00:00Z", &["2026-03-02T12:00:00Z"]),
    ("0 12 * * 6", "UTC", "2026-02-25T00:00:00Z", &["2026-02-28T12:00:00Z"]),
    ("0 12 * * 1-5", "UTC", "2026-02-27T13:00:00Z", &["2026-03-02T12:00:00Z", "2026-03-03T12:00:00Z"]),
    (
        "0 12 * * 5-7",
        "UTC",
        "2026-02-26T13:00:00Z",
        &["2026-02-27T12:00:00Z", "2026-02-28T12:00:00Z", "2026-03-01T12:00:00Z", "2026-03-06T12:00:00Z"],
    ),
    // Day of month OR day of week when both are restricted (Vixie cron).
    (
        "0 0 13 * 5",
        "UTC",
        "2026-03-01T00:00:00Z",
        &["2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z", "2026-03-20T00:00:00Z"],
    ),
    // New York spring forward, 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 does
    // not exist and fires at 03:00 EDT (07:00Z), once.
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T00:00:00Z",
        &["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    // All four quarter hours of the gap collapse onto 03:00 EDT, which also matches.
    (
        "*/15 * * * *",
        "America/New_York",
        "2026-03-08T01:40:00-05:00",
        &["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00"],
    ),
    // An hourly job at :30 with 02:30 missing runs at 03:00 and 03:30.
    (
        "30 * * * *",
        "America/New_York",
        "2026-03-08T01:00:00-05:00",
        &["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"],
    ),
    // New York fall back, 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 fires once,
    // on its first (EDT) occurrence.
    (
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T00:00:00-04:00",
        &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    ),
    (
        "*/30 * * * *",
        "America/New_York",
        "2026-11-01T00:50:00-04:00",
        &[
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T02:00:00-05:00",
            "2026-11-01T02:30:00-05:00",
        ],
    ),
    // Starting inside the second pass of the repeated hour: the repeats are
    // not fired again.
    ("*/30 * * * *", "America/New_York", "2026-11-01T01:10:00-05:00", &["2026-11-01T02:00:00-05:00"]),
    // Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    // Berlin, fall back 2026-10-25 03:00 CEST -> 02:00 CET.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    ),
    // A time outside the transitions keeps its wall clock across them.
    ("0 9 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", &["2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"]),
    // London, spring forward 2026-03-29 01:00 GMT -> 02:00 BST; fall back 2026-10-25 02:00 BST -> 01:00 GMT.
    (
        "30 1 * * *",
        "Europe/London",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"],
    ),
    (
        "30 1 * * *",
        "Europe/London",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"],
    ),
    // Sydney (southern hemisphere): fall back 2026-04-05 03:00 AEDT -> 02:00 AEST,
    // spring forward 2026-10-04 02:00 AEST -> 03:00 AEDT.
    (
        "30 2 * * *",
        "Australia/Sydney",
        "2026-04-04T00:00:00Z",
        &["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"],
    ),
    (
        "30 2 * * *",
        "Australia/Sydney",
        "2026-10-02T12:00:00Z",
        &["2026-10-03T02:30:00+10:00", "2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"],
    ),
    // Lord Howe shifts by half an hour: 02:00 LHDT -> 01:30 LHST on 2026-04-05 (01:30-02:00
    // repeats), and 02:00 LHST -> 02:30 LHDT on 2026-10-04 (02:00-02:30 is missing).
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T00:00:00Z",
        &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
    ),
    (
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-02T00:00:00Z",
        &["2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
    ),
    // Month ends: the 31st only in months that have one; `L` is the last day, 29 Feb in leap years.
    (
        "0 0 31 * *",
        "UTC",
        "2026-01-31T00:00:00Z",
        &["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z"],
    ),
    ("0 0 30 * *", "UTC", "2026-01-30T00:00:00Z", &["2026-03-30T00:00:00Z"]),
    (
        "0 12 L * *",
        "UTC",
        "2026-01-15T00:00:00Z",
        &["2026-01-31T12:00:00Z", "2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z", "2026-04-30T12:00:00Z"],
    ),
    ("0 12 L 2 *", "UTC", "2027-03-01T00:00:00Z", &["2028-02-29T12:00:00Z", "2029-02-28T12:00:00Z"]),
    // Leap days: 29 Feb comes every four years (2100 is not a leap year).
    ("0 0 29 2 *", "UTC", "2028-02-29T00:00:00Z", &["2032-02-29T00:00:00Z"]),
    ("0 0 29 2 *", "UTC", "2097-01-01T00:00:00Z", &["2104-02-29T00:00:00Z"]),
    // Month ends in a zone ahead of UTC: midnight on the 1st is the previous day in UTC.
    ("0 0 1 * *", "Asia/Tokyo", "2026-02-15T00:00:00Z", &["2026-02-28T15:00:00Z", "2026-03-31T15:00:00Z"]),
    // 6 fields: seconds first.
    (
        "*/20 * * * * *",
        "UTC",
        "2026-03-01T10:00:05Z",
        &["2026-03-01T10:00:20Z", "2026-03-01T10:00:40Z", "2026-03-01T10:01:00Z"],
    ),
    ("30 0 9 * * MON", "UTC", "2026-02-25T00:00:00Z", &["2026-03-02T09:00:30Z", "2026-03-09T09:00:30Z"]),
    // A seconds-precise time in a gap fires at the first instant after the gap.
    ("15 30 2 * * *", "America/New_York", "2026-03-08T00:00:00-05:00", &["2026-03-08T03:00:00-04:00"]),
    // Every 30 s through New York's repeated hour: each second-pass time is dropped.
    (
        "*/30 59 1 * * *",
        "America/New_York",
        "2026-11-01T01:59:10-04:00",
        &["2026-11-01T01:59:30-04:00", "2026-11-02T01:59:00-05:00"],
    ),
    // The @-forms.
    ("@daily", "America/New_York", "2026-03-07T12:00:00Z", &["2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"]),
    ("@weekly", "UTC", "2026-03-02T00:00:00Z", &["2026-03-08T00:00:00Z", "2026-03-15T00:00:00Z"]),
    ("@monthly", "UTC", "2026-03-02T00:00:00Z", &["2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"]),
];

#[test]
fn cron_next_fires() {
    for (expr, tz, after, expected) in CRON_CASES {
        let got = cron(expr, tz).next_fires(at(after), expected.len(), unused());
        let expected: Vec<DateTime<Utc>> = expected.iter().map(|t| at(t)).collect();
        assert_eq!(got, expected, "{expr:?} in {tz} after {after}");
    }
}

#[test]
fn dst_instants_in_utc() {
    // The same gap and repeated-hour cases spelled in UTC, to pin the offsets.
    let ny = cron("30 2 * * *", "America/New_York");
    assert_eq!(ny.next_fires(utc(2026, 3, 8, 0, 0, 0), 1, unused()), vec![utc(2026, 3, 8, 7, 0, 0)]);
    let ny = cron("30 1 * * *", "America/New_York");
    assert_eq!(
        ny.next_fires(utc(2026, 11, 1, 0, 0, 0), 2, unused()),
        vec![utc(2026, 11, 1, 5, 30, 0), utc(2026, 11, 2, 6, 30, 0)]
    );
    let berlin = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(berlin.next_fires(utc(2026, 3, 29, 0, 0, 0), 1, unused()), vec![utc(2026, 3, 29, 1, 0, 0)]);
    assert_eq!(berlin.next_fires(utc(2026, 10, 25, 0, 0, 0), 1, unused()), vec![utc(2026, 10, 25, 0, 30, 0)]);
    // After the first 02:30 of the repeated hour, the next is the following day.
    assert_eq!(berlin.next_fires(utc(2026, 10, 25, 0, 30, 0), 1, unused()), vec![utc(2026, 10, 26, 1, 30, 0)]);
}

#[test]
fn invalid_schedules_yield_no_fires() {
    assert!(cron("bogus", "UTC").next_fires(utc(2026, 1, 1, 0, 0, 0), 3, unused()).is_empty());
    assert!(cron("* * * * *", "Nowhere/Land").next_fires(utc(2026, 1, 1, 0, 0, 0), 3, unused()).is_empty());
    let zero = Schedule::Period { every_ms: 0, anchor: None };
    assert!(zero.next_fires(utc(2026, 1, 1, 0, 0, 0), 3, unused()).is_empty());
    assert!(cron("* * * * *", "UTC").next_fires(utc(2026, 1, 1, 0, 0, 0), 0, unused()).is_empty());
}

#[test]
fn period_fires_on_anchor_plus_multiples() {
    let anchor = utc(2026, 1, 1, 0, 0, 0);
    let every_10s = Schedule::Period { every_ms: 10_000, anchor: Some(anchor) };
    let other = utc(2030, 1, 1, 0, 0, 0); // must be ignored: the spec has an anchor
                                          // (after, expected)
    let cases: &[(DateTime<Utc>, &[DateTime<Utc>])] = &[
        (
            at("2026-01-01T00:00:25.5Z"),
            &[utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 0, 40), utc(2026, 1, 1, 0, 0, 50)],
        ),
        // Exactly on a fire: strictly after.
        (utc(2026, 1, 1, 0, 0, 30), &[utc(2026, 1, 1, 0, 0, 40), utc(2026, 1, 1, 0, 0, 50)]),
        (at("2026-01-01T00:00:29.999999999Z"), &[utc(2026, 1, 1, 0, 0, 30)]),
        (at("2026-01-01T00:00:30.000000001Z"), &[utc(2026, 1, 1, 0, 0, 40)]),
        // Exactly on the anchor: the anchor itself is not after it.
        (anchor, &[utc(2026, 1, 1, 0, 0, 10)]),
        // Before the anchor: the anchor is the first fire.
        (utc(2025, 12, 31, 23, 0, 0), &[anchor, utc(2026, 1, 1, 0, 0, 10)]),
        // Far later: still on the grid.
        (utc(2026, 7, 4, 12, 34, 56), &[utc(2026, 7, 4, 12, 35, 0), utc(2026, 7, 4, 12, 35, 10)]),
    ];
    for (after, expected) in cases {
        assert_eq!(every_10s.next_fires(*after, expected.len(), other), expected.to_vec(), "after {after}");
    }
}

#[test]
fn period_uses_default_anchor_and_does_not_drift() {
    // 16.5 h (11 periods) after deploy is 2026-02-11T00:30:00.250Z.
    let deployed = at("2026-02-10T08:00:00.250Z");
    let every_90m = Schedule::Period { every_ms: 5_400_000, anchor: None };
    let fires = every_90m.next_fires(at("2026-02-11T00:00:00Z"), 3, deployed);
    assert_eq!(
        fires,
        vec![at("2026-02-11T00:30:00.250Z"), at("2026-02-11T02:00:00.250Z"), at("2026-02-11T03:30:00.250Z")]
    );
    for fire in &fires {
        assert_eq!((*fire - deployed).num_milliseconds() % 5_400_000, 0);
    }
    // Asking again from a late point (a run that overran) lands on the same grid.
    let late = every_90m.next_fires(at("2026-02-11T00:30:07Z"), 1, deployed);
    assert_eq!(late, vec![at("2026-02-11T02:00:00.250Z")]);
    // A sub-second period grid (1500ms) stays exact.
    let fast = Schedule::Period { every_ms: 1_500, anchor: Some(utc(2026, 1, 1, 0, 0, 0)) };
    assert_eq!(
        fast.next_fires(utc(2026, 1, 1, 0, 0, 2), 3, deployed),
        vec![at("2026-01-01T00:00:03Z"), at("2026-01-01T00:00:04.5Z"), at("2026-01-01T00:00:06Z")]
    );
}

#[test]
fn period_is_anchored_across_leap_days_and_dst() {
    // A daily period anchored on a leap day stays on midnight UTC.
    let leap = utc(2024, 2, 29, 0, 0, 0);
    let daily = Schedule::Period { every_ms: 86_400_000, anchor: Some(leap) };
    assert_eq!(
        daily.next_fires(utc(2025, 2, 28, 12, 0, 0), 2, unused()),
        vec![utc(2025, 3, 1, 0, 0, 0), utc(2025, 3, 2, 0, 0, 0)]
    );
    // 365 days after 29 Feb 2024 is 28 Feb 2025; 366 after that is 1 Mar 2026.
    let yearly = Schedule::Period { every_ms: 365 * 86_400_000, anchor: Some(leap) };
    assert_eq!(
        yearly.next_fires(utc(2024, 3, 1, 0, 0, 0), 2, unused()),
        vec![utc(2025, 2, 28, 0, 0, 0), utc(2026, 2, 28, 0, 0, 0)]
    );
    // A period is an interval on the time line: an hourly period through New York's gap
    // stays an hour apart although the wall clock jumps from 01:00 to 03:00.
    let hourly = Schedule::Period { every_ms: 3_600_000, anchor: Some(at("2026-03-08T00:00:00-05:00")) };
    assert_eq!(
        hourly.next_fires(at("2026-03-08T00:30:00-05:00"), 3, unused()),
        vec![at("2026-03-08T01:00:00-05:00"), at("2026-03-08T03:00:00-04:00"), at("2026-03-08T04:00:00-04:00")]
    );
}

#[test]
fn many_fires_are_strictly_increasing_in_every_zone() {
    // A year of 6-hourly fires in zones with odd offsets and both DST hemispheres.
    for tz in ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"] {
        let fires = cron("0 */6 * * *", tz).next_fires(utc(2026, 1, 1, 0, 0, 0), 4 * 366, unused());
        assert_eq!(fires.len(), 4 * 366, "{tz}");
        assert!(fires.windows(2).all(|w| w[0] < w[1]), "{tz}: not strictly increasing");
    }
}
