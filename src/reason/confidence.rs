//! Confidence from token log-probabilities: `exp(mean logprob)`, the
//! geometric mean of the chosen tokens' probabilities.
//!
//! A confidence is only ever computed from log-probabilities the backend sent;
//! when it sent none the answer's confidence is `None`, never a guess.

use serde_json::Value;

/// Running sum of token log-probabilities, fed from one JSON answer or from
/// every chunk of a stream.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LogprobTally {
    sum: f64,
    count: u64,
}

impl LogprobTally {
    /// Adds one token's log-probability.
    pub fn add(&mut self, logprob: f64) {
        self.sum += logprob;
        self.count += 1;
    }

    /// Adds every `logprobs.content[*].logprob` of one OpenAI `choice` object
    /// (a full answer's choice or a stream chunk's). Absent, `null`, empty or
    /// oddly shaped log-probabilities add nothing.
    pub fn add_choice_logprobs(&mut self, choice: &Value) {
        let Some(tokens) = choice
            .get("logprobs")
            .and_then(|lp| lp.get("content"))
            .and_then(Value::as_array)
        else {
            return;
        };
        for logprob in tokens
            .iter()
            .filter_map(|token| token.get("logprob").and_then(Value::as_f64))
        {
            self.add(logprob);
        }
    }

    /// `exp(mean logprob)` clamped to [0, 1] and rounded to 3 decimals, or
    /// `None` when no token log-probability was seen (or they were not finite
    /// numbers in a way that leaves no meaningful mean).
    pub fn confidence(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let mean = self.sum / self.count as f64;
        if mean.is_nan() {
            return None;
        }
        // exp(-inf) = 0: a token the model gave probability zero.
        let confidence = mean.exp().clamp(0.0, 1.0);
        Some((confidence * 1000.0).round() / 1000.0)
    }
}

/// Confidence of a whole answer from its tokens' log-probabilities; see
/// [`LogprobTally::confidence`].
pub fn confidence_from_logprobs(logprobs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut tally = LogprobTally::default();
    for logprob in logprobs {
        tally.add(logprob);
    }
    tally.confidence()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn confidence_is_exp_of_mean_logprob_rounded_to_three_decimals() {
        // mean -0.2, exp(-0.2) = 0.8187...
        assert_eq!(confidence_from_logprobs([-0.1, -0.2, -0.3]), Some(0.819));
        assert_eq!(confidence_from_logprobs([0.0, 0.0]), Some(1.0));
    }

    #[test]
    fn confidence_stays_within_zero_and_one() {
        assert_eq!(confidence_from_logprobs([0.5]), Some(1.0));
        assert_eq!(
            confidence_from_logprobs([f64::NEG_INFINITY, -1.0]),
            Some(0.0)
        );
        assert_eq!(confidence_from_logprobs([-50.0]), Some(0.0));
    }

    #[test]
    fn no_logprobs_means_no_confidence() {
        assert_eq!(confidence_from_logprobs([]), None);
        assert_eq!(confidence_from_logprobs([f64::NAN]), None);
        for choice in [
            json!({"message": {"content": "hi"}}),
            json!({"logprobs": null}),
            json!({"logprobs": {"content": null}}),
            json!({"logprobs": {"content": []}}),
            json!({"logprobs": {"content": [{"token": "hi"}]}}),
        ] {
            let mut tally = LogprobTally::default();
            tally.add_choice_logprobs(&choice);
            assert_eq!(tally.confidence(), None, "{choice}");
        }
    }

    #[test]
    fn choice_logprobs_accumulate_across_chunks() {
        let mut tally = LogprobTally::default();
        tally.add_choice_logprobs(&json!({"logprobs": {"content": [{"logprob": -0.1}]}}));
        tally.add_choice_logprobs(&json!({"logprobs": {"content": [{"logprob": -0.3}]}}));
        assert_eq!(tally.confidence(), Some(0.819));
    }
}
