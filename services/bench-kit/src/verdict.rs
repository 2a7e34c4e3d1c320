//! Whether a benchmark met its target, said one way by every benchmark: a
//! run counts its attempts and its failures, and "met" needs the figure
//! on target, enough successful samples, and no failure.

use std::fmt;

/// A run's attempts and failures and whether its figure reached the target.
#[derive(Clone, Copy, Debug)]
pub struct Verdict {
    attempts: usize,
    failures: usize,
    min_samples: usize,
    target: bool,
}

impl Verdict {
    /// `attempts` tried (failures included), `failures` of them failed;
    /// `target` says whether the measured figure reached the target.
    pub fn new(attempts: usize, failures: usize, min_samples: usize, target: bool) -> Self {
        Verdict {
            attempts,
            failures,
            min_samples,
            target,
        }
    }

    fn successes(&self) -> usize {
        self.attempts.saturating_sub(self.failures)
    }

    pub fn met(&self) -> bool {
        self.target && self.failures == 0 && self.successes() >= self.min_samples
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.met() {
            return f.write_str("met");
        }
        f.write_str("NOT met")?;
        if self.failures > 0 {
            write!(f, " ({} of {} failed)", self.failures, self.attempts)?;
        } else if self.successes() < self.min_samples {
            write!(
                f,
                " (only {} samples, {} needed)",
                self.successes(),
                self.min_samples
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn met_needs_the_target_enough_samples_and_no_failure() {
        assert_eq!(Verdict::new(1000, 0, 100, true).to_string(), "met");
        assert_eq!(Verdict::new(1000, 0, 100, false).to_string(), "NOT met");
        assert_eq!(
            Verdict::new(1000, 3, 100, true).to_string(),
            "NOT met (3 of 1000 failed)"
        );
        assert_eq!(
            Verdict::new(10, 0, 100, true).to_string(),
            "NOT met (only 10 samples, 100 needed)"
        );
    }
}
