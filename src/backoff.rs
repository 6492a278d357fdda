//! Exponential backoff from 100 ms to a cap: the one retry schedule used for
//! topic creation, re-sends the broker refused, and schema registry requests.

use std::time::Duration;

/// Doubling delays from 100 ms (or the cap, if lower) up to the cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    next_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// A schedule capped at `max_ms`.
    pub fn new(max_ms: u64) -> Self {
        Backoff {
            next_ms: 100.min(max_ms),
            max_ms,
        }
    }

    /// The next delay; each call doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = Duration::from_millis(self.next_ms);
        self.next_ms = (self.next_ms * 2).min(self.max_ms);
        delay
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_100_ms_up_to_the_cap() {
        let mut b = Backoff::new(500);
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(Backoff::new(50).next_delay(), Duration::from_millis(50));
    }
}
