//! A cache of compiled policies on disk, for pipelines that replay many captures against one
//! large policy.
//!
//! Reading a policy is cheap for the few dozen rules a hospital writes by hand, but a generated
//! policy of thousands of rules spends tens of milliseconds in the TOML parser at every start
//! (5,000 rules: about 40 ms, two thirds of the time judging a million packets takes). A CI job
//! that replays each fixture with its own `segwatch replay` pays that once per fixture. With a
//! cache directory, the first run stores the compiled policy and its warnings; later runs on
//! the same policy bytes read them back in about 2 ms (8 ms for a hospital group's 20,000 rules
//! and 8,000 zones).
//!
//! It lives beside the replay, its one user, and not in [`crate::classify`], the hot path's
//! module: the compiled tables only derive serde's traits for it.
//!
//! An entry is found by a BLAKE3 key over the policy file's bytes, its file name's stem (the
//! default policy name), the segwatch version and the running executable's identity (size,
//! inode, modification and change times), so an edited policy or a rebuilt segwatch never
//! reads an old entry. An entry holds the key again and a checksum of its body; a compiled
//! policy read back is checked ([`CompiledPolicy::check_consistent`]) before use. Accidental
//! damage to an entry (unreadable, truncated, corrupt, another format) is logged and the
//! policy compiled from its file as if there were no cache: it costs time, never a verdict or
//! the run. A crafted entry cannot make judging panic, but it can hold any verdicts, so the
//! directory is used only when it is as safe as the policy file: owned by this user, writable
//! by nobody else. The directory keeps the [`KEPT_ENTRIES`] most recently used entries.

use std::path::{Path, PathBuf};

use crate::classify::CompiledPolicy;
use crate::policy::{Diagnostic, PolicyError, load_policy_bytes, unreadable_policy};

/// The first bytes of every entry.
const MAGIC: &[u8; 16] = b"segwatch policy\n";

/// The entry layout's version; part of the key, and checked again in the entry. 2: the
/// zone-pair tables that grow with the rules and the zones. 3: the named services that
/// require an application, for the `service` label. 4: a zone pair's cell holds the rules to
/// or from `any` too.
const FORMAT: u32 = 4;

/// How many entries a cache directory keeps; storing one more removes the oldest.
pub const KEPT_ENTRIES: usize = 16;

/// Entries larger than this are neither read nor written: a 5,000-rule policy's entry is
/// 0.5 MB, a hospital group's 20,000 rules and 8,000 zones 3 MB, and decoding can take many times
/// an entry's size in memory.
const MAX_ENTRY_BYTES: u64 = 32 << 20;

/// How temporary files (an entry being written) end.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// A temporary file older than this was left by a run that was killed while storing.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Extension of entry files.
const EXTENSION: &str = "policy";

/// Bytes before an entry's body: magic, format, key, checksum of the body.
const HEADER_BYTES: usize = MAGIC.len() + 4 + 32 + 32;

/// What an entry stores.
#[derive(serde::Deserialize)]
struct Entry {
    compiled: CompiledPolicy,
    /// The policy's warnings, printed again on every run that uses the entry.
    warnings: Vec<Diagnostic>,
}

/// An [`Entry`] to write, borrowed: the same fields in the same order, so the same bytes.
#[derive(serde::Serialize)]
struct EntryRef<'a> {
    compiled: &'a CompiledPolicy,
    warnings: &'a [Diagnostic],
}

/// A policy made ready for judging.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The compiled policy.
    pub compiled: CompiledPolicy,
    /// Its warnings, naming the file as given.
    pub warnings: Vec<Diagnostic>,
    /// Where it came from.
    pub source: PolicySource,
}

/// Where a [`LoadedPolicy`] came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// Read back from the cache.
    Cache,
    /// Compiled from the file and stored in the cache.
    CompiledAndStored,
    /// Compiled from the file; not stored (the reason, for a log line).
    Compiled(String),
}

/// A directory of compiled policies.
#[derive(Clone, Debug)]
pub struct PolicyCache {
    dir: PathBuf,
    /// [`MAX_ENTRY_BYTES`], smaller in tests.
    max_entry_bytes: u64,
}

impl PolicyCache {
    /// A cache in `dir`, created when the first entry is stored.
    pub fn new(dir: impl Into<PathBuf>) -> PolicyCache {
        PolicyCache {
            dir: dir.into(),
            max_entry_bytes: MAX_ENTRY_BYTES,
        }
    }

    /// The policy file at `path`, compiled: from the cache when it holds an entry for these
    /// bytes, or compiled from the file and stored. Errors are the policy's own, exactly as
    /// [`load_policy_file`](crate::policy::load_policy_file) reports them; a cache that cannot
    /// be read or written only costs time (and a log line).
    pub fn load(&self, path: &Path) -> Result<LoadedPolicy, PolicyError> {
        // The file is opened once: hashed, and on a miss read again from the start of the same
        // handle, so a file renamed over it meanwhile is never mixed in. A policy that is not a
        // regular file (a pipe, `<(...)`) can be read only once: then no cache.
        let opened = std::fs::File::open(path)
            .and_then(|file| Ok((file.metadata()?.is_file(), file)))
            .map_err(|e| unreadable_policy(path, &e))?;
        let mut file = match opened {
            (true, file) => file,
            (false, mut file) => {
                return uncached(read_whole(&mut file, path)?, path, "not a regular file");
            }
        };
        let Some(identity) = executable_identity() else {
            let bytes = read_whole(&mut file, path)?;
            return uncached(bytes, path, "the running executable cannot be identified");
        };
        if let Err(problem) = self.check_trusted() {
            tracing::warn!(cache = %self.dir.display(), problem, "Not using the policy cache");
            return uncached(read_whole(&mut file, path)?, path, &problem);
        }
        // The key is hashed from the file as it streams by (64 KiB reads): reading a large
        // policy into one buffer first would cost more (its fresh pages) than everything
        // else a hit does.
        let mut hasher = key_hasher(path, &identity);
        if hasher.update_reader(&file).is_ok() {
            let key = hasher.finalize();
            let entry_path = self.entry_path(&key);
            match read_entry(&entry_path, &key, self.max_entry_bytes) {
                Ok(Some((compiled, mut warnings))) => {
                    for warning in &mut warnings {
                        warning.file = path.to_path_buf();
                    }
                    return Ok(LoadedPolicy {
                        compiled,
                        warnings,
                        source: PolicySource::Cache,
                    });
                }
                Ok(None) => {}
                Err(problem) => tracing::warn!(
                    entry = %entry_path.display(),
                    problem,
                    "Ignoring a damaged policy cache entry; compiling the policy again"
                ),
            }
        }
        // A miss: the entry is stored under the key of the bytes read now (the file may have
        // been rewritten in place since it was hashed).
        let bytes = read_whole(&mut file, path)?;
        let mut hasher = key_hasher(path, &identity);
        hasher.update(&bytes);
        let key = hasher.finalize();
        let (policy, warnings) = load_policy_bytes(bytes, path)?;
        let compiled = CompiledPolicy::compile(&policy);
        let source = match self.store(&key, &compiled, &warnings) {
            Ok(()) => PolicySource::CompiledAndStored,
            Err(error) => {
                let reason = format!("cannot store it in {}: {error}", self.dir.display());
                tracing::warn!(reason, "Policy compiled but not cached");
                PolicySource::Compiled(reason)
            }
        };
        Ok(LoadedPolicy {
            compiled,
            warnings,
            source,
        })
    }

    /// Where the entry with `key` lives.
    fn entry_path(&self, key: &blake3::Hash) -> PathBuf {
        self.dir.join(format!("{}.{EXTENSION}", key.to_hex()))
    }

    /// An entry decides verdicts as much as the policy file does, so the directory must be as
    /// safe from other users: owned by this user and writable by nobody else (as OpenSSH asks
    /// of `~/.ssh`). A directory that does not exist yet is created so when an entry is stored.
    fn check_trusted(&self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let metadata = match std::fs::metadata(&self.dir) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error.to_string()),
        };
        if !metadata.is_dir() {
            return Err("not a directory".into());
        }
        let user = crate::sys::effective_uid();
        if metadata.uid() != user {
            return Err(format!(
                "owned by user {}, not by this user ({user})",
                metadata.uid()
            ));
        }
        if metadata.mode() & 0o022 != 0 {
            return Err("writable by other users (chmod go-w it)".into());
        }
        Ok(())
    }

    /// Writes an entry whole (a new file renamed into place, so a concurrent run reads the old
    /// entry, the new one or none, never half of one), then keeps the newest
    /// [`KEPT_ENTRIES`].
    fn store(
        &self,
        key: &blake3::Hash,
        compiled: &CompiledPolicy,
        warnings: &[Diagnostic],
    ) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let body = encode_entry_body(compiled, warnings).map_err(std::io::Error::other)?;
        // What a later run would refuse is not written: it would be compiled and written again
        // on every run.
        let size = (HEADER_BYTES + body.len()) as u64;
        if size > self.max_entry_bytes {
            return Err(std::io::Error::other(format!(
                "its entry would be {size} bytes, more than an entry can be ({} bytes)",
                self.max_entry_bytes
            )));
        }
        if let Err(problem) = decode_entry_body(&body) {
            return Err(std::io::Error::other(format!(
                "its entry would not read back: {problem}"
            )));
        }
        let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(blake3::hash(&body).as_bytes());
        bytes.extend_from_slice(&body);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        // A fresh name that no other run (in this or another container) picks, created new:
        // never a file or link that was already there.
        let temporary = self.dir.join(format!(
            ".{}.{}.{:016x}{TEMPORARY_SUFFIX}",
            key.to_hex(),
            std::process::id(),
            fastrand::u64(..)
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| std::fs::rename(&temporary, self.entry_path(key)));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        self.prune();
        Ok(())
    }

    /// Removes the least recently used entries beyond [`KEPT_ENTRIES`], and temporary files
    /// that a killed run left (older than [`STALE_TEMPORARY`]). Only names segwatch writes
    /// are touched. Best effort: another run may be pruning too.
    fn prune(&self) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for item in listing.filter_map(Result::ok) {
            let name = item.file_name();
            let name = name.to_string_lossy();
            let Some(modified) = item.metadata().ok().and_then(|m| m.modified().ok()) else {
                continue;
            };
            if is_entry_name(&name) {
                entries.push((modified, item.path()));
            } else if name.starts_with('.')
                && name.ends_with(TEMPORARY_SUFFIX)
                && now
                    .duration_since(modified)
                    .is_ok_and(|age| age > STALE_TEMPORARY)
            {
                let _ = std::fs::remove_file(item.path());
            }
        }
        if entries.len() <= KEPT_ENTRIES {
            return;
        }
        entries.sort();
        let excess = entries.len() - KEPT_ENTRIES;
        for (_, path) in entries.into_iter().take(excess) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// True for the name of an entry: 64 hexadecimal digits and the extension.
fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(EXTENSION)
        .and_then(|stem| stem.strip_suffix('.'))
        .is_some_and(|key| key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `file` from its start: the policy's bytes.
fn read_whole(file: &mut std::fs::File, path: &Path) -> Result<Vec<u8>, PolicyError> {
    use std::io::{Read, Seek};
    let mut bytes = Vec::new();
    // A pipe cannot seek, and has not been read yet: then from where it is.
    let _ = file.rewind();
    file.read_to_end(&mut bytes)
        .map_err(|e| unreadable_policy(path, &e))?;
    Ok(bytes)
}

/// A policy compiled from `bytes` without the cache, and why.
fn uncached(bytes: Vec<u8>, path: &Path, reason: &str) -> Result<LoadedPolicy, PolicyError> {
    let (policy, warnings) = load_policy_bytes(bytes, path)?;
    Ok(LoadedPolicy {
        compiled: CompiledPolicy::compile(&policy),
        warnings,
        source: PolicySource::Compiled(reason.to_owned()),
    })
}

/// What identifies the running executable, so that an entry never outlives the build (and
/// layout) that wrote it: its size, modification and change times, inode and device. The
/// change time is set by the kernel whenever the file is written or installed, so builds that
/// pin modification times (reproducible builds, some package stores) still differ.
/// `None` when it cannot be found.
fn executable_identity() -> Option<[u64; 7]> {
    use std::os::unix::fs::MetadataExt;
    let executable = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    Some([
        executable.size(),
        executable.mtime() as u64,
        executable.mtime_nsec() as u64,
        executable.ctime() as u64,
        executable.ctime_nsec() as u64,
        executable.ino(),
        executable.dev(),
    ])
}

/// A hasher fed with everything in an entry's key but the policy's bytes, which follow.
fn key_hasher(path: &Path, identity: &[u64; 7]) -> blake3::Hasher {
    let stem = path.file_stem().unwrap_or_default().as_encoded_bytes();
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let mut hasher = blake3::Hasher::new();
    hasher.update(MAGIC);
    hasher.update(&FORMAT.to_le_bytes());
    // Lengths first, so that no two different inputs hash the same bytes.
    for part in [version, stem] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    for value in identity {
        hasher.update(&value.to_le_bytes());
    }
    hasher
}

/// The compiled policy and warnings of the entry at `entry_path`: `Ok(None)` when there is
/// none, `Err` with what is wrong with it.
fn read_entry(
    entry_path: &Path,
    key: &blake3::Hash,
    max_entry_bytes: u64,
) -> Result<Option<(CompiledPolicy, Vec<Diagnostic>)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that a pipe put where an entry belongs cannot hang the run.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(entry_path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    let size = metadata.len();
    if size > max_entry_bytes {
        return Err(format!("{size} bytes, more than an entry can be"));
    }
    // Mapped, not read: reading copies the entry into fresh pages, which cost more than the
    // rest of reading it back but decoding. segwatch never changes an entry in place (it
    // writes a new file and renames it over the old one).
    let map = crate::sys::map_replaced_only_file(&file).map_err(|e| e.to_string())?;
    // The mapping's length, not `size`: the file may have shrunk since.
    let (header, body) = map
        .split_at_checked(HEADER_BYTES)
        .ok_or("shorter than an entry's header")?;
    let (magic, rest) = header.split_at(MAGIC.len());
    let (format, rest) = rest.split_at(4);
    let (stored_key, checksum) = rest.split_at(32);
    if magic != MAGIC {
        return Err("not a segwatch policy cache entry".into());
    }
    if format != FORMAT.to_le_bytes() {
        return Err("written in another entry format".into());
    }
    if stored_key != key.as_bytes() {
        return Err("holds another policy's entry".into());
    }
    if checksum != blake3::hash(body).as_bytes() {
        return Err("corrupt: its checksum does not match".into());
    }
    let decoded = decode_entry_body(body)?;
    // Used now: pruning keeps the entries used last, not only those stored last.
    let _ = file.set_modified(std::time::SystemTime::now());
    Ok(Some(decoded))
}

/// Decodes an entry's body (what follows its header) into a compiled policy, checked for
/// consistency, and its warnings: any bytes give one or an error, never a panic, and the
/// policy given judges any flow (the `policy_cache_entry` fuzz target holds it to that).
pub fn decode_entry_body(body: &[u8]) -> Result<(CompiledPolicy, Vec<Diagnostic>), String> {
    let entry: Entry = postcard::from_bytes(body).map_err(|e| format!("cannot be decoded: {e}"))?;
    entry.compiled.check_consistent()?;
    Ok((entry.compiled, entry.warnings))
}

/// An entry's body for `compiled` and `warnings`, as [`PolicyCache`] stores it (for tests and
/// the fuzz target's seeds).
pub fn encode_entry_body(
    compiled: &CompiledPolicy,
    warnings: &[Diagnostic],
) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(&EntryRef { compiled, warnings }).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_policy_file;
    use std::time::UNIX_EPOCH;

    /// The key of the entry for the policy file at `path` as it is now.
    fn key_of(path: &Path) -> blake3::Hash {
        let mut hasher = key_hasher(path, &executable_identity().unwrap());
        hasher.update(&std::fs::read(path).unwrap());
        hasher.finalize()
    }

    const POLICY: &str = r#"
[zones.pumps]
networks = ["10.20.0.0/22", "fd00:20::/48"]
[zones.servers]
networks = ["10.30.0.0/16", "10.30.5.0/24"]
[services.pump-api]
tcp = [8443, "9000-9010"]
[[rules]]
name = "pumps-to-servers"
from = ["pumps"]
to = ["servers"]
services = ["pump-api", "udp/514"]
action = "allow"
[[rules]]
name = "shadowed"
from = ["pumps"]
to = ["servers"]
services = ["tcp/8443"]
action = "alert"
"#;

    fn write_policy(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|listing| listing.map(|item| item.unwrap().path()).collect())
            .unwrap_or_default();
        found.sort();
        found
    }

    /// What a compiled policy decides and prints, compared between a cached and a fresh one.
    fn behaviour(policy: &CompiledPolicy) -> String {
        use crate::wire::Transport;
        let mut out = format!("{} {:?}\n", policy.name(), policy.rules());
        for (a, b) in [
            ("10.20.1.1", "10.30.5.9"),
            ("10.20.1.1", "10.30.9.9"),
            ("fd00:20::1", "8.8.8.8"),
        ] {
            let zone = |text: &str| {
                let ip: std::net::IpAddr = text.parse().unwrap();
                match ip {
                    std::net::IpAddr::V4(v4) => policy.zone_of(false, u32::from(v4) as u128),
                    std::net::IpAddr::V6(v6) => policy.zone_of(true, u128::from(v6)),
                }
            };
            let (from, to) = (zone(a).zone, zone(b).zone);
            for (transport, port) in [
                (Transport::Tcp, 8443),
                (Transport::Tcp, 9010),
                (Transport::Tcp, 9011),
                (Transport::Udp, 514),
                (Transport::EchoRequest, 0),
            ] {
                let verdict = policy.judge(from, to, transport, port);
                out += &format!(
                    "{a} {b} {transport:?}/{port}: {:?} {:?} {:?}\n",
                    verdict,
                    policy.action(verdict),
                    policy.service_label(verdict, transport, port, None)
                );
            }
        }
        out
    }

    /// The fuzz target's seeds are the bundled policies' entry bodies in today's format; with
    /// `SEGWATCH_WRITE_SEEDS=1` set, this test writes them (after a format change).
    #[test]
    fn the_fuzz_seeds_are_the_bundled_policies_entries() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let seeds = root.join("fuzz/corpus/policy_cache_entry");
        let write = std::env::var_os("SEGWATCH_WRITE_SEEDS").is_some();
        let mut checked = 0;
        for item in std::fs::read_dir(root.join("policies")).unwrap() {
            let path = item.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let (policy, warnings) = load_policy_file(&path).unwrap();
            let body = encode_entry_body(&CompiledPolicy::compile(&policy), &warnings).unwrap();
            if write {
                std::fs::create_dir_all(&seeds).unwrap();
                std::fs::write(seeds.join(&name), &body).unwrap();
            }
            let seed = std::fs::read(seeds.join(&name)).unwrap();
            assert!(
                seed == body,
                "fuzz/corpus/policy_cache_entry/{name} is stale: run this test with \
                 SEGWATCH_WRITE_SEEDS=1 (and bump FORMAT if the layout changed)"
            );
            decode_entry_body(&seed).unwrap();
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    /// A scratch directory with a cache in `cache/` (not created yet) and [`POLICY`] in
    /// `ward.toml`.
    struct Scratch {
        dir: tempfile::TempDir,
        cache_dir: PathBuf,
        cache: PolicyCache,
        path: PathBuf,
    }

    fn scratch() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let path = write_policy(dir.path(), "ward.toml", POLICY);
        Scratch {
            cache: PolicyCache::new(&cache_dir),
            dir,
            cache_dir,
            path,
        }
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_policy_from_a_pipe_is_read_once_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let pipe = dir.path().join("ward.toml");
        mkfifo(&pipe);
        let writer = {
            let pipe = pipe.clone();
            std::thread::spawn(move || std::fs::write(pipe, POLICY).unwrap())
        };
        let loaded = PolicyCache::new(&cache_dir).load(&pipe).unwrap();
        writer.join().unwrap();
        assert_eq!(
            loaded.source,
            PolicySource::Compiled("not a regular file".into())
        );
        assert_eq!(loaded.compiled.rules().len(), 2);
        assert_eq!(loaded.compiled.name(), "ward");
        assert!(entries(&cache_dir).is_empty());
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir(&cache_dir).unwrap();
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = write_policy(dir.path(), "ward.toml", POLICY);
        let loaded = PolicyCache::new(&cache_dir).load(&path).unwrap();
        assert!(
            matches!(&loaded.source, PolicySource::Compiled(reason) if reason.contains("writable by other users")),
            "{:?}",
            loaded.source
        );
        assert!(entries(&cache_dir).is_empty());
        // Made private, it is used; a directory it creates is private.
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = PolicyCache::new(&cache_dir);
        assert_eq!(
            cache.load(&path).unwrap().source,
            PolicySource::CompiledAndStored
        );
        assert_eq!(cache.load(&path).unwrap().source, PolicySource::Cache);
        let created = dir.path().join("new/cache");
        PolicyCache::new(&created).load(&path).unwrap();
        let mode = std::fs::metadata(&created).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_pipe_where_an_entry_belongs_does_not_hang_the_run() {
        let Scratch {
            dir: _dir,
            cache_dir,
            cache,
            path,
        } = scratch();
        std::fs::create_dir(&cache_dir).unwrap();
        mkfifo(&cache.entry_path(&key_of(&path)));
        assert_eq!(
            cache.load(&path).unwrap().source,
            PolicySource::CompiledAndStored
        );
        assert_eq!(cache.load(&path).unwrap().source, PolicySource::Cache);
    }

    #[test]
    fn a_second_load_reads_the_entry_and_judges_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_policy(dir.path(), "ward.toml", POLICY);
        let cache = PolicyCache::new(dir.path().join("cache"));

        let first = cache.load(&path).unwrap();
        assert_eq!(first.source, PolicySource::CompiledAndStored);
        assert_eq!(entries(&dir.path().join("cache")).len(), 1);
        let second = cache.load(&path).unwrap();
        assert_eq!(second.source, PolicySource::Cache);

        let (fresh, fresh_warnings) = load_policy_file(&path).unwrap();
        let fresh = CompiledPolicy::compile(&fresh);
        assert_eq!(behaviour(&second.compiled), behaviour(&fresh));
        assert!(behaviour(&fresh).contains("Some(\"pump-api\")"));
        assert_eq!(second.warnings, fresh_warnings);
        assert_eq!(first.warnings, fresh_warnings);
        assert!(
            fresh_warnings
                .iter()
                .any(|w| w.message.contains("shadowed")),
            "{fresh_warnings:?}"
        );
    }

    #[test]
    fn warnings_name_the_file_as_given_this_time() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PolicyCache::new(dir.path().join("cache"));
        let first = write_policy(dir.path(), "ward.toml", POLICY);
        cache.load(&first).unwrap();
        std::fs::create_dir(dir.path().join("copy")).unwrap();
        let second = write_policy(&dir.path().join("copy"), "ward.toml", POLICY);
        let loaded = cache.load(&second).unwrap();
        assert_eq!(loaded.source, PolicySource::Cache);
        assert!(loaded.warnings.iter().all(|w| w.file == second));
        assert!(!loaded.warnings.is_empty());
    }

    #[test]
    fn another_text_or_file_name_is_another_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PolicyCache::new(dir.path().join("cache"));
        let path = write_policy(dir.path(), "ward.toml", POLICY);
        cache.load(&path).unwrap();
        // One byte more: a new entry, and the new text's verdicts.
        let edited = POLICY.replace("action = \"allow\"", "action = \"alert\"");
        write_policy(dir.path(), "ward.toml", &edited);
        let loaded = cache.load(&path).unwrap();
        assert_eq!(loaded.source, PolicySource::CompiledAndStored);
        assert_eq!(
            loaded.compiled.rules()[0].action,
            crate::policy::Action::Alert
        );
        // The same text under another name: the default policy name differs.
        let renamed = write_policy(dir.path(), "icu.toml", POLICY);
        let loaded = cache.load(&renamed).unwrap();
        assert_eq!(loaded.source, PolicySource::CompiledAndStored);
        assert_eq!(loaded.compiled.name(), "icu");
        assert_eq!(entries(&dir.path().join("cache")).len(), 3);
    }

    #[test]
    fn damaged_entries_are_compiled_again_and_replaced() {
        let Scratch {
            dir: _dir,
            cache_dir,
            cache,
            path,
        } = scratch();
        let fresh = behaviour(&cache.load(&path).unwrap().compiled);
        let entry = entries(&cache_dir).pop().unwrap();
        let good = std::fs::read(&entry).unwrap();

        let flip_in_body = {
            let mut bytes = good.clone();
            let at = HEADER_BYTES + (bytes.len() - HEADER_BYTES) / 2;
            bytes[at] ^= 0x40;
            bytes
        };
        let flip_in_key = {
            let mut bytes = good.clone();
            bytes[MAGIC.len() + 4] ^= 1;
            bytes
        };
        let other_format = {
            let mut bytes = good.clone();
            bytes[MAGIC.len()] ^= 2;
            bytes
        };
        for damaged in [
            Vec::new(),
            good[..HEADER_BYTES - 1].to_vec(),
            good[..good.len() - 1].to_vec(),
            flip_in_body,
            flip_in_key,
            other_format,
            b"not an entry at all".repeat(10),
        ] {
            std::fs::write(&entry, &damaged).unwrap();
            let loaded = cache.load(&path).unwrap();
            assert_eq!(loaded.source, PolicySource::CompiledAndStored);
            assert_eq!(behaviour(&loaded.compiled), fresh);
            assert_eq!(
                std::fs::read(&entry).unwrap(),
                good,
                "the entry is written again"
            );
        }
    }

    #[test]
    fn an_inconsistent_entry_with_a_valid_checksum_is_refused() {
        let Scratch {
            dir: _dir,
            cache_dir,
            cache,
            path,
        } = scratch();
        cache.load(&path).unwrap();
        let entry_path = entries(&cache_dir).pop().unwrap();
        let bytes = std::fs::read(&entry_path).unwrap();
        // A crafted entry: one zone fewer than its zone table and pair tables assume. A
        // compiled policy is stored field by field, its name and zones first: that head of the
        // body is replaced by one with a zone fewer.
        let entry: Entry = postcard::from_bytes(&bytes[HEADER_BYTES..]).unwrap();
        let compiled = &entry.compiled;
        let zones: Vec<crate::classify::ZoneInfo> = (0..compiled.zone_count() as u32)
            .map(|zone| compiled.zone(zone).clone())
            .collect();
        let head = postcard::to_stdvec(&(compiled.name(), &zones)).unwrap();
        assert!(bytes[HEADER_BYTES..].starts_with(&head));
        let mut body = postcard::to_stdvec(&(compiled.name(), &zones[..zones.len() - 1])).unwrap();
        body.extend_from_slice(&bytes[HEADER_BYTES + head.len()..]);
        let mut crafted = bytes[..MAGIC.len() + 4 + 32].to_vec();
        crafted.extend_from_slice(blake3::hash(&body).as_bytes());
        crafted.extend_from_slice(&body);
        std::fs::write(&entry_path, crafted).unwrap();

        let key = key_of(&path);
        let problem = read_entry(&entry_path, &key, MAX_ENTRY_BYTES)
            .err()
            .unwrap();
        assert!(problem.contains("zone"), "{problem}");
        assert_eq!(
            cache.load(&path).unwrap().source,
            PolicySource::CompiledAndStored
        );
    }

    #[test]
    fn an_entry_too_large_to_be_read_is_not_written() {
        let Scratch {
            dir: _dir,
            cache_dir,
            path,
            ..
        } = scratch();
        // Room for this policy's entry but a byte: a later run would refuse it.
        let size = {
            let (policy, warnings) = load_policy_file(&path).unwrap();
            let body = encode_entry_body(&CompiledPolicy::compile(&policy), &warnings).unwrap();
            (HEADER_BYTES + body.len()) as u64
        };
        let cache = PolicyCache {
            max_entry_bytes: size - 1,
            ..PolicyCache::new(&cache_dir)
        };
        for _ in 0..2 {
            let loaded = cache.load(&path).unwrap();
            assert!(
                matches!(&loaded.source, PolicySource::Compiled(reason)
                    if reason.contains("more than an entry can be")),
                "{:?}",
                loaded.source
            );
            assert_eq!(loaded.compiled.rules().len(), 2);
            assert!(entries(&cache_dir).is_empty());
        }
        // With room for it, it is written, and read back.
        let cache = PolicyCache {
            max_entry_bytes: size,
            ..PolicyCache::new(&cache_dir)
        };
        assert_eq!(
            cache.load(&path).unwrap().source,
            PolicySource::CompiledAndStored
        );
        assert_eq!(cache.load(&path).unwrap().source, PolicySource::Cache);
    }

    #[test]
    fn errors_are_the_policy_files_and_nothing_is_stored() {
        let Scratch {
            dir,
            cache_dir,
            cache,
            ..
        } = scratch();
        let path = write_policy(
            dir.path(),
            "bad.toml",
            "[zones.a]\nnetworks = [\"10.0.0.0/33\"]\n",
        );
        let via_cache = cache.load(&path).unwrap_err();
        assert_eq!(via_cache, load_policy_file(&path).unwrap_err());
        let missing = dir.path().join("missing.toml");
        assert_eq!(
            cache.load(&missing).unwrap_err(),
            load_policy_file(&missing).unwrap_err()
        );
        assert!(entries(&cache_dir).is_empty());
    }

    #[test]
    fn an_unusable_cache_only_costs_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_policy(dir.path(), "ward.toml", POLICY);
        let compiled_because = |cache: &Path, why: &str| {
            let loaded = PolicyCache::new(cache).load(&path).unwrap();
            assert!(
                matches!(&loaded.source, PolicySource::Compiled(reason) if reason.contains(why)),
                "{:?}",
                loaded.source
            );
            assert_eq!(loaded.compiled.rules().len(), 2);
        };
        // The cache "directory" is a file, or lies under one.
        let blocker = write_policy(dir.path(), "not-a-dir", "");
        compiled_because(&blocker, "not a directory");
        compiled_because(&blocker.join("cache"), "");
        // The entry's name is taken by a directory (even root cannot rename over it).
        let cache_dir = dir.path().join("cache");
        let taken = PolicyCache::new(&cache_dir).entry_path(&key_of(&path));
        std::fs::create_dir_all(taken.join("inside")).unwrap();
        compiled_because(&cache_dir, "cannot store it in");
        // No temporary file stays behind.
        assert_eq!(entries(&cache_dir), [taken]);
    }

    /// Sets a file's modification time to `seconds` after the epoch.
    fn set_age(path: &Path, seconds: u64) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(UNIX_EPOCH + std::time::Duration::from_secs(seconds))
            .unwrap();
    }

    /// Stores `count` policies `p0.toml`... in `dir`, each entry visibly older than the next
    /// (modification times order the entries).
    fn store_in_order(dir: &Path, cache: &PolicyCache, count: usize) -> Vec<PathBuf> {
        (0..count)
            .map(|i| {
                let path = write_policy(dir, &format!("p{i}.toml"), POLICY);
                cache.load(&path).unwrap();
                set_age(&cache.entry_path(&key_of(&path)), 1_000_000 + i as u64);
                path
            })
            .collect()
    }

    #[test]
    fn pruning_drops_the_least_recently_used_and_only_what_segwatch_wrote() {
        let Scratch {
            dir,
            cache_dir,
            cache,
            ..
        } = scratch();
        let paths = store_in_order(dir.path(), &cache, KEPT_ENTRIES);
        // A user's files, a temporary file a killed run left long ago, one being written now.
        let foreign = ["notes.policy", "README.txt", ".abc.tmp.keep"];
        for name in foreign {
            std::fs::write(cache_dir.join(name), "mine").unwrap();
            set_age(&cache_dir.join(name), 1);
        }
        std::fs::write(cache_dir.join(".stale.123.tmp"), "half").unwrap();
        set_age(&cache_dir.join(".stale.123.tmp"), 1);
        std::fs::write(cache_dir.join(".fresh.456.tmp"), "half").unwrap();
        // The oldest entry is used: it becomes the newest.
        assert_eq!(cache.load(&paths[0]).unwrap().source, PolicySource::Cache);

        let extra = write_policy(dir.path(), "extra.toml", POLICY);
        cache.load(&extra).unwrap();
        let exists = |path: &Path| cache.entry_path(&key_of(path)).exists();
        assert!(exists(&paths[0]), "used last, kept");
        assert!(!exists(&paths[1]), "least recently used, dropped");
        assert!(paths[2..].iter().all(|path| exists(path)));
        assert!(exists(&extra));
        for name in foreign.iter().chain(&[".fresh.456.tmp"]) {
            assert!(cache_dir.join(name).exists(), "{name} kept");
        }
        assert!(!cache_dir.join(".stale.123.tmp").exists());
    }

    #[test]
    fn the_directory_keeps_the_newest_entries() {
        let Scratch {
            dir,
            cache_dir,
            cache,
            ..
        } = scratch();
        let paths = store_in_order(dir.path(), &cache, KEPT_ENTRIES + 3);
        // The last store pruned the three oldest; temporary files never stay.
        let left = entries(&cache_dir);
        assert_eq!(left.len(), KEPT_ENTRIES, "{left:?}");
        // Newest first: a miss stores its entry and prunes again.
        for (i, path) in paths.iter().enumerate().rev() {
            let kept = cache.load(path).unwrap().source == PolicySource::Cache;
            assert_eq!(kept, i >= 3, "p{i}");
        }
    }
}
