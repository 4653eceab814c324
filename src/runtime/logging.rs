//! The daemon's log, kept readable when something fails over and over: a
//! line that repeats (a UDP receiver that is missing answers every send
//! with an error) is written at most once per kind per [`REPEAT_PERIOD`],
//! and the next line of that kind says how many were left out meanwhile.
//!
//! A kind is one logging statement with the same text: its message and the
//! fields that name things (`feed`, `file`, ...), but not its numbers, so
//! that "lost=3" and "lost=4" are the same kind while two feeds, or two
//! different errors, are two. [`RepeatLimit`] is the `tracing` filter that
//! decides; [`NoteSuppressed`] is the formatter that adds the count.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use tracing::Metadata;
use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

/// At most one line of a kind per this long.
pub const REPEAT_PERIOD: Duration = Duration::from_secs(5);

/// Kinds remembered at once; past this, kinds not seen within the period
/// are forgotten (a forgotten kind's next line is written).
const MAX_KINDS: usize = 4096;

/// When a kind was last written, and how many of it were left out since.
#[derive(Debug)]
struct Seen {
    written: Instant,
    suppressed: u64,
}

/// The filter: lets a line through when its kind was not written within
/// the period.
#[derive(Debug)]
pub struct RepeatLimit {
    period: Duration,
    // Control-plane logging, not the packet path: a plain mutex held for a
    // map lookup per log line.
    seen: std::sync::Mutex<HashMap<u64, Seen>>,
    hasher: foldhash::fast::FixedState,
}

thread_local! {
    /// The count of lines left out before the line being written, handed
    /// from the filter to the formatter on the same thread.
    static SUPPRESSED: Cell<Option<(Identifier, u64)>> = const { Cell::new(None) };
}

impl RepeatLimit {
    /// A limit of one line per kind per `period`.
    pub fn new(period: Duration) -> RepeatLimit {
        RepeatLimit {
            period,
            seen: std::sync::Mutex::new(HashMap::new()),
            hasher: foldhash::fast::FixedState::with_seed(0x5e9_a7c4),
        }
    }

    fn kind(&self, event: &tracing::Event<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        event.metadata().callsite().hash(&mut hasher);
        event.record(&mut KindVisitor(&mut hasher));
        hasher.finish()
    }

    /// Whether a line of `kind` may be written now; when it may, the count
    /// left out before it.
    fn admit(&self, kind: u64, now: Instant) -> Option<u64> {
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            // A panic elsewhere while logging: keep logging.
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(entry) = seen.get_mut(&kind) {
            if now.duration_since(entry.written) < self.period {
                entry.suppressed += 1;
                return None;
            }
            entry.written = now;
            return Some(std::mem::take(&mut entry.suppressed));
        }
        if seen.len() >= MAX_KINDS {
            let period = self.period;
            seen.retain(|_, entry| now.duration_since(entry.written) < period);
        }
        if seen.len() < MAX_KINDS {
            seen.insert(
                kind,
                Seen {
                    written: now,
                    suppressed: 0,
                },
            );
        }
        Some(0)
    }
}

/// Hashes what makes a line's kind: its text, not its numbers.
struct KindVisitor<'h, H: Hasher>(&'h mut H);

impl<H: Hasher> Visit for KindVisitor<'_, H> {
    fn record_str(&mut self, field: &Field, value: &str) {
        field.name().hash(self.0);
        value.hash(self.0);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        field.name().hash(self.0);
        let _ = write!(HashWriter(self.0), "{value:?}");
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        use std::fmt::Write as _;
        field.name().hash(self.0);
        let _ = write!(HashWriter(self.0), "{value}");
    }

    // Numbers (counts, sizes, ids) do not make a new kind.
    fn record_i64(&mut self, _: &Field, _: i64) {}
    fn record_u64(&mut self, _: &Field, _: u64) {}
    fn record_f64(&mut self, _: &Field, _: f64) {}
    fn record_bool(&mut self, field: &Field, value: bool) {
        field.name().hash(self.0);
        value.hash(self.0);
    }
}

/// Feeds formatted text to a hasher without allocating.
struct HashWriter<'h, H: Hasher>(&'h mut H);

impl<H: Hasher> std::fmt::Write for HashWriter<'_, H> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.write(text.as_bytes());
        Ok(())
    }
}

impl<S> Filter<S> for RepeatLimit {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &Context<'_, S>) -> bool {
        match self.admit(self.kind(event), Instant::now()) {
            None => false,
            Some(suppressed) => {
                let note = (suppressed > 0).then(|| (event.metadata().callsite(), suppressed));
                SUPPRESSED.set(note);
                true
            }
        }
    }
}

/// A formatter that adds, to a line written after others of its kind were
/// left out, how many: `[12 similar lines suppressed since the last one
/// shown]`.
#[derive(Debug)]
pub struct NoteSuppressed<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for NoteSuppressed<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let note = SUPPRESSED
            .take()
            .filter(|(callsite, _)| *callsite == event.metadata().callsite());
        let Some((_, suppressed)) = note else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        writeln!(
            writer,
            "{line} [{suppressed} similar line{} suppressed since the last one shown]",
            if suppressed == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_period_then_the_count() {
        let limit = RepeatLimit::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(limit.admit(1, start), Some(0));
        for n in 1..=40 {
            assert_eq!(limit.admit(1, start + Duration::from_millis(n * 100)), None);
        }
        // Another kind is not held back by the first.
        assert_eq!(limit.admit(2, start + Duration::from_secs(1)), Some(0));
        assert_eq!(limit.admit(1, start + Duration::from_secs(5)), Some(40));
        assert_eq!(limit.admit(1, start + Duration::from_secs(6)), None);
        assert_eq!(limit.admit(1, start + Duration::from_secs(10)), Some(1));
    }

    #[test]
    fn the_kinds_held_are_bounded() {
        let limit = RepeatLimit::new(Duration::from_secs(5));
        let start = Instant::now();
        for kind in 0..MAX_KINDS as u64 * 2 {
            assert_eq!(limit.admit(kind, start), Some(0));
        }
        let held = limit.seen.lock().unwrap().len();
        assert_eq!(held, MAX_KINDS);
        // Once they are old, they make room.
        assert_eq!(
            limit.admit(u64::MAX, start + Duration::from_secs(6)),
            Some(0)
        );
        assert_eq!(limit.seen.lock().unwrap().len(), 1);
    }
}
