use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a failed job waits before its next attempt.
///
/// Every mode takes a `jitter` fraction in `[0, 1]`: the delay is spread uniformly over
/// `delay × (1 ± jitter)` so that jobs that failed together do not retry together.
/// The default is exponential (1 s, 2 s, 4 s, … capped at 1 h) with 20 % jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay after every failure.
    Constant {
        /// Delay in milliseconds.
        delay_ms: u64,
        /// Jitter fraction.
        jitter: f64,
    },
    /// `base + step × (attempt − 1)`, capped at `max`.
    Linear {
        /// Delay after the first failure, in milliseconds.
        base_ms: u64,
        /// Added per further failure, in milliseconds.
        step_ms: u64,
        /// Cap in milliseconds.
        max_ms: u64,
        /// Jitter fraction.
        jitter: f64,
    },
    /// `base × factor^(attempt − 1)`, capped at `max`.
    Exponential {
        /// Delay after the first failure, in milliseconds.
        base_ms: u64,
        /// Growth per failure (≥ 1).
        factor: f64,
        /// Cap in milliseconds.
        max_ms: u64,
        /// Jitter fraction.
        jitter: f64,
    },
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            base_ms: 1_000,
            factor: 2.0,
            max_ms: 3_600_000,
            jitter: 0.2,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Backoff {
    /// The same `delay` after every failure, without jitter.
    pub fn constant(delay: Duration) -> Self {
        Backoff::Constant {
            delay_ms: ms(delay),
            jitter: 0.0,
        }
    }

    /// `base`, then `base + step`, `base + 2·step`, … capped at `max`, without jitter.
    pub fn linear(base: Duration, step: Duration, max: Duration) -> Self {
        Backoff::Linear {
            base_ms: ms(base),
            step_ms: ms(step),
            max_ms: ms(max),
            jitter: 0.0,
        }
    }

    /// `base`, `2·base`, `4·base`, … capped at `max`, without jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff::Exponential {
            base_ms: ms(base),
            factor: 2.0,
            max_ms: ms(max),
            jitter: 0.0,
        }
    }

    /// Sets the jitter fraction (clamped to `[0, 1]`).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        let f = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match &mut self {
            Backoff::Constant { jitter, .. }
            | Backoff::Linear { jitter, .. }
            | Backoff::Exponential { jitter, .. } => *jitter = f,
        }
        self
    }

    /// Checks the parameters: every jitter a fraction in `[0, 1]` (NaN and negative ones
    /// are refused: NaN is stored as `null` and would not read back), every delay and cap
    /// at least 1 ms, a cap not below its base, an exponential factor finite and at least 1.
    /// The message says which parameter and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        let jitter = match *self {
            Backoff::Constant { jitter, .. }
            | Backoff::Linear { jitter, .. }
            | Backoff::Exponential { jitter, .. } => jitter,
        };
        if !(0.0..=1.0).contains(&jitter) {
            return Err(format!("jitter {jitter} is not a fraction: use 0 to 1"));
        }
        let positive = |name: &str, ms: u64| {
            if ms == 0 {
                Err(format!("{name} is 0 ms: use at least 1 ms"))
            } else {
                Ok(())
            }
        };
        match *self {
            Backoff::Constant { delay_ms, .. } => positive("delay", delay_ms),
            Backoff::Linear {
                base_ms, max_ms, ..
            } => {
                positive("base", base_ms)?;
                if max_ms < base_ms {
                    return Err(format!("max {max_ms} ms is below base {base_ms} ms"));
                }
                Ok(())
            }
            Backoff::Exponential {
                base_ms,
                factor,
                max_ms,
                ..
            } => {
                positive("base", base_ms)?;
                if max_ms < base_ms {
                    return Err(format!("max {max_ms} ms is below base {base_ms} ms"));
                }
                if !(factor.is_finite() && factor >= 1.0) {
                    return Err(format!(
                        "factor {factor} is invalid: use a finite number of at least 1"
                    ));
                }
                Ok(())
            }
        }
    }

    /// Delay before the attempt after failed `attempt` (1-based).
    ///
    /// `unit` is a random number in `[0, 1)` that places the delay inside the jitter band;
    /// pass 0.5 for the centre. Pure, so it can be tested exactly.
    pub fn delay(&self, attempt: i32, unit: f64) -> Duration {
        let n = attempt.max(1) as u32 - 1;
        let (base, jitter) = match *self {
            Backoff::Constant { delay_ms, jitter } => (delay_ms as f64, jitter),
            Backoff::Linear {
                base_ms,
                step_ms,
                max_ms,
                jitter,
            } => (
                (base_ms as f64 + step_ms as f64 * f64::from(n)).min(max_ms as f64),
                jitter,
            ),
            Backoff::Exponential {
                base_ms,
                factor,
                max_ms,
                jitter,
            } => (
                (base_ms as f64 * factor.max(1.0).powi(n.min(1_000) as i32)).min(max_ms as f64),
                jitter,
            ),
        };
        let spread = 1.0 + jitter.clamp(0.0, 1.0) * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let millis = (base * spread).max(0.0);
        Duration::from_millis(if millis.is_finite() {
            millis as u64
        } else {
            u64::MAX / 2
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_and_caps() {
        let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(10));
        let secs: Vec<u64> = (1..=6).map(|a| b.delay(a, 0.5).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn linear_adds_step_and_caps() {
        let b = Backoff::linear(
            Duration::from_secs(2),
            Duration::from_secs(3),
            Duration::from_secs(9),
        );
        let secs: Vec<u64> = (1..=4).map(|a| b.delay(a, 0.5).as_secs()).collect();
        assert_eq!(secs, vec![2, 5, 8, 9]);
    }

    #[test]
    fn jitter_spreads_within_band() {
        let b = Backoff::constant(Duration::from_millis(1000)).with_jitter(0.1);
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(900));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(1100));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(1000));
    }

    #[test]
    fn default_is_exponential_with_jitter() {
        let b = Backoff::default();
        assert!(matches!(b, Backoff::Exponential { jitter, .. } if jitter > 0.0));
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(50, 0.5), Duration::from_secs(3600));
    }

    #[test]
    fn invalid_parameters_are_named() {
        let nan = Backoff::Constant {
            delay_ms: 1000,
            jitter: f64::NAN,
        };
        assert!(nan.check().unwrap_err().contains("jitter NaN"));
        let neg = Backoff::Constant {
            delay_ms: 1000,
            jitter: -0.5,
        };
        assert!(neg.check().unwrap_err().contains("jitter -0.5"));
        assert!(Backoff::constant(Duration::ZERO)
            .check()
            .unwrap_err()
            .contains("delay is 0 ms"));
        let inf = Backoff::Exponential {
            base_ms: 1,
            factor: f64::INFINITY,
            max_ms: 10,
            jitter: 0.0,
        };
        assert!(inf.check().unwrap_err().contains("factor inf"));
        let capped_below = Backoff::linear(
            Duration::from_secs(5),
            Duration::ZERO,
            Duration::from_secs(1),
        );
        assert!(capped_below.check().unwrap_err().contains("below base"));
        Backoff::default().check().unwrap();
        Backoff::constant(Duration::from_millis(1))
            .with_jitter(1.0)
            .check()
            .unwrap();
    }

    #[test]
    fn round_trips_as_json() {
        let b = Backoff::linear(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(5),
        );
        let s = serde_json::to_string(&b).unwrap();
        assert!(s.contains("\"mode\":\"linear\""), "{s}");
        assert_eq!(serde_json::from_str::<Backoff>(&s).unwrap(), b);
    }
}
