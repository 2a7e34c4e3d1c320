//! The one retry delay every reconnecting loop uses: doubling from a
//! minimum to a maximum, back to the minimum after a success.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay the next [`wait`](Self::wait) sleeps.
    pub fn delay(&self) -> Duration {
        self.next
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// Sleeps the current delay, then doubles it (up to the maximum).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    /// [`wait`](Self::wait) for a thread of its own, off the async runtime.
    pub fn wait_blocking(&mut self) {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(self.max);
    }

    /// [`wait_blocking`](Self::wait_blocking), looking at `stop` every
    /// `step`: answers false, at once, when it says to stop.
    pub fn wait_blocking_unless(&mut self, step: Duration, stop: impl Fn() -> bool) -> bool {
        let until = std::time::Instant::now() + self.next;
        self.next = (self.next * 2).min(self.max);
        loop {
            if stop() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep(step.min(until - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_delay_doubles_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(b.delay());
            b.wait().await;
        }
        assert_eq!(seen, [100, 200, 350, 350].map(Duration::from_millis));
        b.reset();
        assert_eq!(b.delay(), Duration::from_millis(100));
    }
}
