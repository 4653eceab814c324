//! A cache of compiled policies on disk, for pipelines that replay many captures against one
//! large policy.
//!
//! Reading a policy is cheap for the few dozen rules a hospital writes by hand, but a generated
//! policy of thousands of rules spends tens of milliseconds in the TOML parser at every start
//! (5,000 rules: about 40 ms, more than judging a million packets takes). A CI job that replays
//! each fixture with its own `segwatch replay` pays that once per fixture. With a cache
//! directory, the first run stores the compiled policy and its warnings; later runs on the same
//! policy bytes read them back in a few milliseconds.
//!
//! An entry is found by a BLAKE3 key over the policy file's bytes, its file name's stem (the
//! default policy name), the segwatch version and the running executable's size and
//! modification time, so an edited policy or a rebuilt segwatch never reads an old entry. An
//! entry holds the key again and a checksum of its body; a compiled policy read back is checked
//! ([`CompiledPolicy::check_consistent`]) before use. Anything wrong with an entry (unreadable,
//! truncated, corrupt, from another format) is logged and the policy is compiled from its file
//! as if there were no cache: the cache can make a start faster, never change a verdict or fail
//! a run. The directory keeps the [`KEPT_ENTRIES`] most recently stored entries.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::CompiledPolicy;
use crate::policy::{Diagnostic, PolicyError, load_policy_bytes, load_policy_file};

/// The first bytes of every entry.
const MAGIC: &[u8; 16] = b"segwatch policy\n";

/// The entry layout's version; part of the key, and checked again in the entry.
const FORMAT: u32 = 1;

/// How many entries a cache directory keeps; storing one more removes the oldest.
pub const KEPT_ENTRIES: usize = 16;

/// Entries larger than this are not read (a 5,000-rule policy's entry is under 2 MB).
const MAX_ENTRY_BYTES: u64 = 256 << 20;

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
}

impl PolicyCache {
    /// A cache in `dir`, created when the first entry is stored.
    pub fn new(dir: impl Into<PathBuf>) -> PolicyCache {
        PolicyCache { dir: dir.into() }
    }

    /// The policy file at `path`, compiled: from the cache when it holds an entry for these
    /// bytes, or compiled from the file and stored. Errors are the policy's own, exactly as
    /// [`load_policy_file`] reports them; a cache that cannot be read or written only costs
    /// time (and a log line).
    pub fn load(&self, path: &Path) -> Result<LoadedPolicy, PolicyError> {
        // The key is hashed from the file as it streams by: reading a large policy into one
        // buffer first would cost more (its fresh pages) than everything else a hit does.
        if let Some(key) = streamed_key(path) {
            let entry_path = self.entry_path(&key);
            match read_entry(&entry_path, &key) {
                Ok(Some(mut entry)) => {
                    for warning in &mut entry.warnings {
                        warning.file = path.to_path_buf();
                    }
                    return Ok(LoadedPolicy {
                        compiled: entry.compiled,
                        warnings: entry.warnings,
                        source: PolicySource::Cache,
                    });
                }
                Ok(None) => {}
                Err(problem) => tracing::warn!(
                    entry = %entry_path.display(),
                    problem,
                    "Ignoring a policy cache entry; compiling the policy again"
                ),
            }
        }
        // A miss. The file is read again, whole, and the entry stored under the key of what
        // was read then (the file may have changed since it was hashed).
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            // The loader words the error (and reads the file again, which fails again).
            Err(_) => {
                let (policy, warnings) = load_policy_file(path)?;
                return Ok(compiled(&policy, warnings, String::new()));
            }
        };
        let Some(key) = executable_identity().map(|identity| {
            let mut hasher = key_hasher(path, identity);
            hasher.update(&bytes);
            hasher.finalize()
        }) else {
            let (policy, warnings) = load_policy_bytes(bytes, path)?;
            return Ok(compiled(
                &policy,
                warnings,
                "the running executable cannot be identified".into(),
            ));
        };
        let entry_path = self.entry_path(&key);
        let (policy, warnings) = load_policy_bytes(bytes, path)?;
        let compiled_policy = CompiledPolicy::compile(&policy);
        // The policy as read is left for the process's exit to free, as the caller does with
        // the compiled one (thousands of allocations for a large policy).
        std::mem::forget(policy);
        let entry = Entry {
            compiled: compiled_policy,
            warnings,
        };
        let source = match self.store(&entry_path, &key, &entry) {
            Ok(()) => PolicySource::CompiledAndStored,
            Err(error) => {
                let reason = format!("cannot store it in {}: {error}", self.dir.display());
                tracing::warn!(reason, "Policy compiled but not cached");
                PolicySource::Compiled(reason)
            }
        };
        Ok(LoadedPolicy {
            compiled: entry.compiled,
            warnings: entry.warnings,
            source,
        })
    }

    /// Where the entry with `key` lives.
    fn entry_path(&self, key: &blake3::Hash) -> PathBuf {
        self.dir.join(format!("{}.{EXTENSION}", key.to_hex()))
    }

    /// Writes an entry whole (a temporary file renamed into place, so a concurrent run reads
    /// the old entry, the new one or none, never half of one), then keeps the newest
    /// [`KEPT_ENTRIES`].
    fn store(&self, entry_path: &Path, key: &blake3::Hash, entry: &Entry) -> std::io::Result<()> {
        let body =
            encode_entry_body(&entry.compiled, &entry.warnings).map_err(std::io::Error::other)?;
        let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(blake3::hash(&body).as_bytes());
        bytes.extend_from_slice(&body);
        std::fs::create_dir_all(&self.dir)?;
        let temporary = self
            .dir
            .join(format!(".{}.{}.tmp", key.to_hex(), std::process::id()));
        if let Err(error) = std::fs::write(&temporary, &bytes)
            .and_then(|()| std::fs::rename(&temporary, entry_path))
        {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        self.prune();
        Ok(())
    }

    /// Removes the oldest entries beyond [`KEPT_ENTRIES`]. Best effort: another run may be
    /// pruning too.
    fn prune(&self) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = listing
            .filter_map(Result::ok)
            .map(|item| item.path())
            .filter(|path| path.extension().is_some_and(|e| e == EXTENSION))
            .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
            .collect();
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

/// A policy compiled from its file, not from the cache.
fn compiled(
    policy: &crate::policy::Policy,
    warnings: Vec<Diagnostic>,
    reason: String,
) -> LoadedPolicy {
    LoadedPolicy {
        compiled: CompiledPolicy::compile(policy),
        warnings,
        source: PolicySource::Compiled(reason),
    }
}

/// What identifies the running executable: its size and modification time, so that an entry
/// never outlives the build (and layout) that wrote it. `None` when it cannot be found.
fn executable_identity() -> Option<(u64, u128)> {
    let executable = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    let modified = executable
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?;
    Some((executable.len(), modified.as_nanos()))
}

/// A hasher fed with everything in an entry's key but the policy's bytes, which follow.
fn key_hasher(path: &Path, (size, modified): (u64, u128)) -> blake3::Hasher {
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
    hasher.update(&size.to_le_bytes());
    hasher.update(&modified.to_le_bytes());
    hasher
}

/// The key of the entry for the policy file at `path`, hashing the file in 64 KiB reads;
/// `None` when it cannot be read or the executable identified.
fn streamed_key(path: &Path) -> Option<blake3::Hash> {
    let mut hasher = key_hasher(path, executable_identity()?);
    let file = std::fs::File::open(path).ok()?;
    hasher.update_reader(file).ok()?;
    Some(hasher.finalize())
}

/// The entry at `entry_path`: `Ok(None)` when there is none, `Err` with what is wrong with it.
fn read_entry(entry_path: &Path, key: &blake3::Hash) -> Result<Option<Entry>, String> {
    let file = match std::fs::File::open(entry_path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size > MAX_ENTRY_BYTES {
        return Err(format!("{size} bytes, more than an entry can be"));
    }
    if size < HEADER_BYTES as u64 {
        return Err("shorter than an entry's header".into());
    }
    // Mapped, not read: reading copies the entry into fresh pages, which cost more than the
    // rest of reading it back but decoding. Soundness: the slice is only immutable while
    // nobody changes the file. segwatch never changes an entry in place (it writes a new file
    // and renames it over the old one, which leaves this mapping on the old file); another
    // program truncating an entry while a replay maps it would kill that replay with SIGBUS,
    // as with a capture file (see `capture::file`).
    #[allow(unsafe_code)]
    let map =
        unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(|e| e.to_string())?;
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
    let (compiled, warnings) = decode_entry_body(body)?;
    Ok(Some(Entry { compiled, warnings }))
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
                    policy.service_label(verdict, transport, port)
                );
            }
        }
        out
    }

    /// The fuzz target's seeds are the bundled policies' entry bodies in today's format
    /// (regenerate them with `segwatch replay --policy-cache` when the format changes).
    #[test]
    fn the_fuzz_seeds_are_the_bundled_policies_entries() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let seeds = root.join("fuzz/corpus/policy_cache_entry");
        let mut checked = 0;
        for item in std::fs::read_dir(root.join("policies")).unwrap() {
            let path = item.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let (policy, warnings) = load_policy_file(&path).unwrap();
            let body = encode_entry_body(&CompiledPolicy::compile(&policy), &warnings).unwrap();
            let seed = std::fs::read(seeds.join(&name)).unwrap();
            assert!(
                seed == body,
                "fuzz/corpus/policy_cache_entry/{name} is stale"
            );
            decode_entry_body(&seed).unwrap();
            checked += 1;
        }
        assert_eq!(checked, 4);
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
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = PolicyCache::new(&cache_dir);
        let path = write_policy(dir.path(), "ward.toml", POLICY);
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
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = PolicyCache::new(&cache_dir);
        let path = write_policy(dir.path(), "ward.toml", POLICY);
        cache.load(&path).unwrap();
        let entry_path = entries(&cache_dir).pop().unwrap();
        let bytes = std::fs::read(&entry_path).unwrap();
        let mut entry: Entry = postcard::from_bytes(&bytes[HEADER_BYTES..]).unwrap();
        // A crafted entry: one zone fewer than its zone table and pair index assume.
        entry.compiled.zones.pop();
        let body = encode_entry_body(&entry.compiled, &entry.warnings).unwrap();
        let mut crafted = bytes[..MAGIC.len() + 4 + 32].to_vec();
        crafted.extend_from_slice(blake3::hash(&body).as_bytes());
        crafted.extend_from_slice(&body);
        std::fs::write(&entry_path, crafted).unwrap();

        let key = streamed_key(&path).unwrap();
        let problem = read_entry(&entry_path, &key).err().unwrap();
        assert!(problem.contains("zone"), "{problem}");
        assert_eq!(
            cache.load(&path).unwrap().source,
            PolicySource::CompiledAndStored
        );
    }

    #[test]
    fn errors_are_the_policy_files_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = PolicyCache::new(&cache_dir);
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
    fn an_unwritable_cache_only_costs_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        // The cache "directory" is a file: nothing can be stored under it.
        let blocker = write_policy(dir.path(), "not-a-dir", "");
        let path = write_policy(dir.path(), "ward.toml", POLICY);
        let loaded = PolicyCache::new(&blocker).load(&path).unwrap();
        assert!(
            matches!(&loaded.source, PolicySource::Compiled(reason) if reason.contains("not-a-dir")),
            "{:?}",
            loaded.source
        );
        assert_eq!(loaded.compiled.rules().len(), 2);
    }

    #[test]
    fn the_directory_keeps_the_newest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = PolicyCache::new(&cache_dir);
        let mut paths = Vec::new();
        for i in 0..KEPT_ENTRIES + 3 {
            let path = write_policy(dir.path(), &format!("p{i}.toml"), POLICY);
            cache.load(&path).unwrap();
            // Modification times order the entries; make each store visibly later.
            let entry = cache_dir.join(format!(
                "{}.{EXTENSION}",
                streamed_key(&path).unwrap().to_hex()
            ));
            let stamp = UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&entry)
                .unwrap()
                .set_modified(stamp)
                .unwrap();
            paths.push(path);
        }
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
