//! The daemon's state directory: one file of evidence per hour (UTC, capture
//! time), named by the hour (`2026-12-07T14.json`), written crash-safe
//! (a temporary file in the directory, fsync, rename, fsync of the
//! directory) and opened with `O_NOFOLLOW`; a later write of the same hour
//! (after a restart, or late counts of an hour already written) merges
//! with the file. Hours older than the retention are pruned.

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::summary::{DeviceSeen, Evidence, Hour, IncidentKey, IncidentSeen, TrafficKey, Volume};
use super::table::HOUR_NS;

/// The format name in every state file.
pub const STATE_FORMAT: &str = "segwatch-evidence-hour/1";

/// The largest state file read: far above what a policy of thousands of
/// rules and the inventory's bound give, far below what would hurt.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// A state file or directory that cannot be used: one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct StateError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

fn error(path: &Path, reason: impl std::fmt::Display) -> StateError {
    StateError {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// One traffic row of a file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficRow {
    #[serde(flatten)]
    key: TrafficKey,
    flows: u64,
    bytes: u64,
}

/// One incidents row of a file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentRow {
    #[serde(flatten)]
    key: IncidentKey,
    closed: u64,
}

/// A state file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HourFile {
    format: String,
    /// The hour's start, RFC 3339.
    hour: String,
    /// The sensors whose evidence it holds (`[state] sensor`).
    #[serde(default)]
    sensors: Vec<String>,
    traffic: Vec<TrafficRow>,
    incidents: Vec<IncidentRow>,
    /// Incidents closed, one by one, up to the hour's bound.
    #[serde(default)]
    closed_incidents: Vec<IncidentSeen>,
    devices: Vec<DeviceSeen>,
}

/// Civil date and hour of an hour since the epoch: `2026-12-07T14`.
pub fn hour_name(hour: u64) -> String {
    let text = crate::event::Timestamp(hour.saturating_mul(HOUR_NS)).text();
    text.as_str()[..13].to_owned()
}

/// The file name of an hour.
pub fn file_name(hour: u64) -> String {
    format!("{}.json", hour_name(hour))
}

/// The hour a state file name stands for, if it is one.
pub fn hour_of_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    if stem.len() != 13 || stem.as_bytes()[10] != b'T' {
        return None;
    }
    let ts = crate::event::Timestamp::parse(&format!("{stem}:00:00Z"))?;
    (ts.0 % HOUR_NS == 0).then_some(ts.0 / HOUR_NS)
}

fn to_file(hour: u64, data: &Hour) -> HourFile {
    HourFile {
        format: STATE_FORMAT.into(),
        hour: format!("{}:00:00Z", hour_name(hour)),
        sensors: data.sensors.iter().cloned().collect(),
        traffic: data
            .traffic
            .iter()
            .map(|(key, volume)| TrafficRow {
                key: key.clone(),
                flows: volume.flows,
                bytes: volume.bytes,
            })
            .collect(),
        incidents: data
            .incidents
            .iter()
            .map(|(key, closed)| IncidentRow {
                key: key.clone(),
                closed: *closed,
            })
            .collect(),
        closed_incidents: data.closed().cloned().collect(),
        devices: data.devices.values().cloned().collect(),
    }
}

fn from_file(file: HourFile) -> Hour {
    let mut hour = Hour::default();
    hour.sensors.extend(file.sensors);
    for incident in file.closed_incidents {
        hour.list_incident(incident);
    }
    for row in file.traffic {
        hour.traffic.entry(row.key).or_default().add(Volume {
            flows: row.flows,
            bytes: row.bytes,
        });
    }
    for row in file.incidents {
        *hour.incidents.entry(row.key).or_default() += row.closed;
    }
    for device in file.devices {
        let ip: IpAddr = device.ip;
        hour.add_device(ip, &device);
    }
    hour
}

/// Reads one state file (opened without following a link); `hour` is the
/// hour its name says, which its content must say too.
pub fn read_hour(path: &Path, hour: u64) -> Result<Hour, StateError> {
    read_hour_bytes(path, hour).map(|(data, _)| data)
}

/// [`read_hour`], with the file's bytes (the report hashes them: each file
/// is read once).
fn read_hour_bytes(path: &Path, hour: u64) -> Result<(Hour, Vec<u8>), StateError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| error(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(error(path, "larger than any state file segwatch writes"));
    }
    let parsed: HourFile = serde_json::from_slice(&bytes)
        .map_err(|e| error(path, format!("not a segwatch state file ({e})")))?;
    if parsed.format != STATE_FORMAT {
        return Err(error(
            path,
            format!("format {:?}, expected {STATE_FORMAT:?}", parsed.format),
        ));
    }
    let said = format!("{}:00:00Z", hour_name(hour));
    if parsed.hour != said {
        return Err(error(
            path,
            format!("holds hour {}, its name says {said}", parsed.hour),
        ));
    }
    Ok((from_file(parsed), bytes))
}

/// Writes hour `hour` into `dir`, merged with what its file holds already;
/// crash-safe: a reader sees the old file or the new one, never a part.
/// Returns how many of `data`'s incidents the file counts but does not
/// list (the hour's bound).
pub fn write_hour(dir: &Path, hour: u64, data: &Hour) -> Result<u64, StateError> {
    let path = dir.join(file_name(hour));
    let mut merged = match read_hour(&path, hour) {
        Ok(old) => old,
        Err(_) if !path.exists() => Hour::default(),
        Err(e) => {
            // A damaged file of this hour is kept aside, not merged.
            let aside = dir.join(format!("{}.damaged", file_name(hour)));
            tracing::warn!(file = %path.display(), error = %e, "State file unreadable: moved aside");
            std::fs::rename(&path, &aside).map_err(|e| error(&path, e))?;
            Hour::default()
        }
    };
    let unlisted_before = merged.incidents_left_out();
    merged.merge(data);
    let unlisted = merged.incidents_left_out().saturating_sub(unlisted_before);
    let mut bytes = serde_json::to_vec(&to_file(hour, &merged)).map_err(|e| error(&path, e))?;
    bytes.push(b'\n');
    crate::sys::replace_file(dir, &file_name(hour), &bytes, 0o640).map_err(|e| error(&path, e))?;
    Ok(unlisted)
}

/// The state files of `dir` with their hours, oldest first (other entries
/// are left alone).
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| error(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| error(dir, e))?;
        let name = entry.file_name();
        if let Some(hour) = name.to_str().and_then(hour_of_name) {
            files.push((hour, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// A state file read for a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRead {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// The evidence of the hours from `since` up to `until` (exclusive), ns
/// since the epoch, and the files read with their hashes; an unreadable
/// file is an error naming it.
pub fn read_period(
    dir: &Path,
    since: u64,
    until: u64,
) -> Result<(Evidence, Vec<FileRead>), StateError> {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let mut evidence = Evidence::default();
    let mut read = Vec::new();
    for (hour, path) in list(dir)? {
        let start = hour * HOUR_NS;
        if start < since || start >= until {
            continue;
        }
        let (data, bytes) = read_hour_bytes(&path, hour)?;
        evidence.hours.insert(hour, data);
        let mut sha256 = String::with_capacity(64);
        for byte in sha2::Sha256::digest(&bytes) {
            let _ = write!(sha256, "{byte:02x}");
        }
        read.push(FileRead {
            path,
            bytes: bytes.len() as u64,
            sha256,
        });
    }
    Ok((evidence, read))
}

/// Removes the state files of hours before `oldest` (hours since the
/// epoch); returns how many.
pub fn prune(dir: &Path, oldest: u64) -> Result<usize, StateError> {
    let mut removed = 0;
    for (hour, path) in list(dir)? {
        if hour < oldest {
            std::fs::remove_file(&path).map_err(|e| error(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::Outcome;

    fn hour_with(flows: u64) -> Hour {
        let mut hour = Hour::default();
        hour.traffic.insert(
            TrafficKey {
                src_zone: "a".into(),
                dest_zone: "b".into(),
                service: Some("https".into()),
                outcome: Outcome::Violation,
                rule: "r".into(),
                severity: Some("high".into()),
                exception: None,
            },
            Volume {
                flows,
                bytes: 10 * flows,
            },
        );
        hour
    }

    #[test]
    fn names_round_trip() {
        let hour = 1_796_119_200 / 3600;
        assert_eq!(file_name(hour), "2026-12-01T10.json");
        assert_eq!(hour_of_name("2026-12-01T10.json"), Some(hour));
        assert_eq!(hour_of_name(".2026-12-01T10.json.tmp"), None);
        assert_eq!(hour_of_name("notes.json"), None);
    }

    #[test]
    fn a_second_write_merges_and_old_hours_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        write_hour(dir.path(), 100, &hour_with(2)).unwrap();
        write_hour(dir.path(), 100, &hour_with(3)).unwrap();
        write_hour(dir.path(), 101, &hour_with(1)).unwrap();
        let read = read_hour(&dir.path().join(file_name(100)), 100).unwrap();
        assert_eq!(read, hour_with(5));
        assert_eq!(prune(dir.path(), 101).unwrap(), 1);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        // Nothing left behind but the files.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn incident(n: u64, severity: &str) -> crate::evidence::IncidentSeen {
        crate::evidence::IncidentSeen {
            id: format!("{n:016x}"),
            kind: "violation".into(),
            rule: "r".into(),
            severity: severity.into(),
            src_ip: IpAddr::from([10, 0, (n >> 8) as u8, n as u8]),
            src_zone: Some("a".into()),
            dest_zone: Some("b".into()),
            service: Some("https".into()),
            dest_ip: None,
            first_seen: 100 * HOUR_NS + n,
            last_seen: 100 * HOUR_NS + n + 5,
            flows: 3,
            destinations: 1,
            exception: None,
        }
    }

    #[test]
    fn an_hour_lists_a_bounded_number_of_incidents_the_most_severe_first() {
        use crate::evidence::MAX_INCIDENTS_PER_HOUR;
        let dir = tempfile::tempdir().unwrap();
        // Two writes of the same hour (a restart), each with more than the
        // bound: one in ten critical, the rest low.
        let mut sizes = Vec::new();
        for run in 0..2u64 {
            let mut hour = Hour::default();
            for n in 0..1000 {
                let severity = if n % 10 == 0 { "critical" } else { "low" };
                hour.add_incident(incident(run * 1000 + n, severity));
            }
            assert_eq!(hour.closed().count(), MAX_INCIDENTS_PER_HOUR);
            write_hour(dir.path(), 100, &hour).unwrap();
            sizes.push(
                std::fs::metadata(dir.path().join(file_name(100)))
                    .unwrap()
                    .len(),
            );
        }
        let read = read_hour(&dir.path().join(file_name(100)), 100).unwrap();
        let listed: Vec<_> = read.closed().collect();
        assert_eq!(listed.len(), MAX_INCIDENTS_PER_HOUR);
        assert_eq!(read.incidents.values().sum::<u64>(), 2000);
        assert_eq!(
            read.incidents_left_out(),
            2000 - MAX_INCIDENTS_PER_HOUR as u64
        );
        // The 200 critical ones come first; of them the earliest 100.
        assert!(listed.iter().all(|i| i.severity == "critical"));
        let first: Vec<u64> = listed
            .iter()
            .map(|i| i.first_seen - 100 * HOUR_NS)
            .collect();
        let want: Vec<u64> = (0..1000).step_by(10).collect();
        assert_eq!(first, want);
        // The file does not grow with the incidents: the second write, with
        // twice as many counted, is as large but for a count's digits.
        assert!(sizes[1] <= sizes[0] + 8, "{sizes:?}");
    }

    #[test]
    fn foreign_corrupt_and_linked_files_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(100));
        std::fs::write(&path, b"{\"format\":\"something-else\"}").unwrap();
        let e = read_hour(&path, 100).unwrap_err();
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
        write_hour(dir.path(), 101, &hour_with(1)).unwrap();
        let moved = dir.path().join(file_name(102));
        std::fs::copy(dir.path().join(file_name(101)), &moved).unwrap();
        let e = read_hour(&moved, 102).unwrap_err();
        assert!(e.to_string().contains("its name says"), "{e}");
        let link = dir.path().join(file_name(103));
        std::os::unix::fs::symlink(dir.path().join(file_name(101)), &link).unwrap();
        assert!(read_hour(&link, 103).is_err(), "a link is not followed");
    }
}
