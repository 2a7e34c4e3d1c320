//! How far a long piece of work is (verifying or exporting a log,
//! restoring it from the stream, rebuilding projections): the work reports,
//! whoever runs it decides how to show it — a bar on a terminal, a log line
//! every few seconds otherwise, or nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Told as the work advances.
pub trait Progress: Send + Sync {
    /// `done` units of `total` are done (`total` 0: not known).
    fn advance(&self, done: u64, total: u64);
    /// The work is over.
    fn finish(&self) {}
}

/// How often a line is said when no terminal shows a bar:
/// `ENSPACE_PROGRESS_EVERY` seconds, 5 by default.
pub fn every_from_env() -> Duration {
    std::env::var("ENSPACE_PROGRESS_EVERY")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(5), Duration::from_secs_f64)
}

/// Shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn advance(&self, _: u64, _: u64) {}
}

/// A line every `every` through `say`: what is done, the rate, and the
/// time left when the total is known.
pub struct Lines<F: Fn(&str) + Send + Sync> {
    what: String,
    every: Duration,
    say: F,
    state: Mutex<LinesState>,
}

struct LinesState {
    started: Instant,
    last: Instant,
    done: u64,
    total: u64,
}

impl<F: Fn(&str) + Send + Sync> Lines<F> {
    /// `what` names the units ("events").
    pub fn new(what: &str, every: Duration, say: F) -> Self {
        let now = Instant::now();
        Lines {
            what: what.to_owned(),
            every,
            say,
            state: Mutex::new(LinesState {
                started: now,
                last: now,
                done: 0,
                total: 0,
            }),
        }
    }

    fn line(&self, state: &LinesState) -> String {
        let secs = state.started.elapsed().as_secs_f64().max(1e-9);
        let rate = state.done as f64 / secs;
        let mut line = format!("{} {}", state.done, self.what);
        if state.total > 0 {
            line.push_str(&format!(" of {}", state.total));
        }
        line.push_str(&format!(", {rate:.0}/s"));
        if state.total > state.done && rate > 0.0 {
            let left = (state.total - state.done) as f64 / rate;
            line.push_str(&format!(", about {left:.0} s left"));
        }
        line
    }
}

impl<F: Fn(&str) + Send + Sync> Progress for Lines<F> {
    fn advance(&self, done: u64, total: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.done = done;
        state.total = total;
        if state.last.elapsed() >= self.every {
            state.last = Instant::now();
            (self.say)(&self.line(&state));
        }
    }

    fn finish(&self) {
        if let Ok(state) = self.state.lock()
            && state.started.elapsed() >= self.every
        {
            (self.say)(&format!("done: {}", self.line(&state)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_is_done_the_rate_and_the_time_left_once_per_interval() {
        let said = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = said.clone();
        let progress = Lines::new("events", Duration::ZERO, move |l: &str| {
            sink.lock().expect("lock").push(l.to_owned())
        });
        progress.advance(10, 40);
        progress.advance(40, 40);
        progress.finish();
        let said = said.lock().expect("lock");
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].starts_with("10 events of 40, "), "{said:?}");
        assert!(said[0].contains("s left"), "{said:?}");
        assert!(said[2].starts_with("done: 40 events of 40"), "{said:?}");

        let quiet = Lines::new("events", Duration::from_secs(3600), |_: &str| {
            panic!("nothing to say within the hour")
        });
        quiet.advance(1, 2);
        quiet.finish();
    }
}
