//! Isolation: when a call fails for a whole batch, find the items that make it fail.
//!
//! A batch call fails as a whole when the policy traps, runs out of time or memory, or answers
//! with the wrong number of items. The batch is then split in halves and each half called
//! again, down to single items, so the items that make the policy fail get the error and the
//! others still get their answer. The cost is bounded per chunk:
//!
//! - at most [`MAX_FAILED_CALLS`] failed calls (each costs an instantiation and whatever the
//!   policy did before failing); with k bad items among n, isolation takes about
//!   2·k·log2(n) calls, so a few bad items are isolated exactly;
//! - at most [`MAX_TIMEOUTS`] timed-out calls, the first one included, because each costs the
//!   whole time limit: a looping item among 1,000 is narrowed down to 250 items in 4 time
//!   limits (8 s by default) rather than to 1 item in 11.
//!
//! Both halves of a failed batch are called before descending into the failed ones, so when
//! the budget runs out, every healthy half met so far has its answers, and only the items of
//! the sub-batches not yet narrowed down get the error. They are reported and asked about
//! again on a later round (never half-applied), where they form a smaller batch: isolation
//! goes on across rounds.
//! Failures that do not depend on the input (the component cannot even be instantiated) are
//! given to every item at once.

use super::error::PolicyError;

/// Most failed calls spent isolating the bad items of one chunk.
pub(super) const MAX_FAILED_CALLS: usize = 64;
/// Most timed-out calls per chunk, the first one included.
pub(super) const MAX_TIMEOUTS: usize = 4;

/// Why a call gave no answers.
#[derive(Debug)]
pub(super) enum CallFailure {
    /// Something in this batch made the policy fail: worth splitting.
    Batch(PolicyError),
    /// The policy fails whatever the input (e.g. it cannot be instantiated).
    Always(PolicyError),
}

/// One call of the policy on a batch: its answers, one per item, or why there are none.
pub(super) type Call<'a, I, A> = dyn FnMut(&[I]) -> Result<Vec<A>, CallFailure> + 'a;

/// Calls `call` on `items`, splitting failed batches to isolate the items that fail.
/// Returns one answer per item, in order.
pub(super) fn isolate<I, A>(items: &[I], call: &mut Call<'_, I, A>) -> Vec<Result<A, PolicyError>> {
    let mut budget = Budget {
        failed_calls: 0,
        timeouts: 0,
        always: None,
    };
    let mut answers = Vec::with_capacity(items.len());
    if !items.is_empty() {
        split(items, call, &mut budget, &mut answers);
    }
    answers
}

struct Budget {
    failed_calls: usize,
    timeouts: usize,
    /// Set once the policy failed regardless of input: no more calls.
    always: Option<PolicyError>,
}

impl Budget {
    fn spend(&mut self, error: &PolicyError) {
        self.failed_calls += 1;
        if matches!(error, PolicyError::Timeout { .. }) {
            self.timeouts += 1;
        }
    }

    fn exhausted(&self) -> bool {
        self.always.is_some()
            || self.failed_calls >= MAX_FAILED_CALLS
            || self.timeouts >= MAX_TIMEOUTS
    }
}

fn split<I, A>(
    items: &[I],
    call: &mut Call<'_, I, A>,
    budget: &mut Budget,
    answers: &mut Vec<Result<A, PolicyError>>,
) {
    match call(items) {
        Ok(batch) => answers.extend(batch.into_iter().map(Ok)),
        Err(CallFailure::Always(error)) => {
            answers.extend(items.iter().map(|_| Err(error.clone())));
            budget.always = Some(error);
        }
        Err(CallFailure::Batch(error)) => {
            budget.spend(&error);
            narrow(items, error, call, budget, answers);
        }
    }
}

/// `items` failed with `error`: calls both halves before descending into the failed ones, so
/// that when the budget runs out the healthy halves met so far have their answers.
fn narrow<I, A>(
    items: &[I],
    error: PolicyError,
    call: &mut Call<'_, I, A>,
    budget: &mut Budget,
    answers: &mut Vec<Result<A, PolicyError>>,
) {
    if items.len() <= 1 || budget.exhausted() {
        answers.extend(items.iter().map(|_| Err(error.clone())));
        return;
    }
    let (left, right) = items.split_at(items.len() / 2);
    let mut probe = |half: &[I], budget: &mut Budget| {
        if let Some(always) = &budget.always {
            return Err(always.clone());
        }
        if budget.exhausted() {
            // Not called: these items may be fine, but the budget is spent.
            return Err(error.clone());
        }
        match call(half) {
            Ok(batch) => Ok(Ok(batch)),
            Err(CallFailure::Always(always)) => {
                budget.always = Some(always.clone());
                Err(always)
            }
            Err(CallFailure::Batch(failure)) => {
                budget.spend(&failure);
                Ok(Err(failure))
            }
        }
    };
    let outcomes = [(left, probe(left, budget)), (right, probe(right, budget))];
    for (half, outcome) in outcomes {
        match outcome {
            Ok(Ok(batch)) => answers.extend(batch.into_iter().map(Ok)),
            Ok(Err(failure)) => narrow(half, failure, call, budget, answers),
            Err(given) => answers.extend(half.iter().map(|_| Err(given.clone()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn trap() -> PolicyError {
        PolicyError::Trap {
            name: "p".to_string(),
            reason: "bad".to_string(),
        }
    }

    fn timeout() -> PolicyError {
        PolicyError::Timeout {
            name: "p".to_string(),
            limit: Duration::from_secs(1),
        }
    }

    /// A fake policy: doubles each item, fails a batch that holds a bad item.
    fn policy<'a>(
        bad: &'static [u32],
        error: fn() -> PolicyError,
        calls: &'a mut usize,
    ) -> impl FnMut(&[u32]) -> Result<Vec<u32>, CallFailure> + 'a {
        move |batch| {
            *calls += 1;
            if batch.iter().any(|i| bad.contains(i)) {
                Err(CallFailure::Batch(error()))
            } else {
                Ok(batch.iter().map(|i| i * 2).collect())
            }
        }
    }

    #[test]
    fn a_good_batch_is_called_once() {
        let items: Vec<u32> = (0..100).collect();
        let mut calls = 0;
        let answers = isolate(&items, &mut policy(&[], trap, &mut calls));
        assert_eq!(calls, 1);
        assert!(
            answers
                .iter()
                .enumerate()
                .all(|(i, a)| a.as_ref().ok() == Some(&(i as u32 * 2)))
        );
    }

    #[test]
    fn bisection_isolates_the_bad_items() {
        let items: Vec<u32> = (0..1000).collect();
        let mut calls = 0;
        let answers = isolate(&items, &mut policy(&[17, 901], trap, &mut calls));
        for (i, answer) in answers.iter().enumerate() {
            match i {
                17 | 901 => assert!(matches!(answer, Err(PolicyError::Trap { .. }))),
                _ => assert_eq!(answer.as_ref().ok(), Some(&(i as u32 * 2))),
            }
        }
        assert!(calls <= 2 * 2 * 10 + 1, "{calls} calls");
    }

    #[test]
    fn timeouts_stop_bisection_early() {
        let items: Vec<u32> = (0..1000).collect();
        let mut calls = 0;
        let answers = isolate(&items, &mut policy(&[3], timeout, &mut calls));
        let failed = answers.iter().filter(|a| a.is_err()).count();
        assert!((1..=250).contains(&failed), "{failed} items failed");
        assert!(matches!(answers[3], Err(PolicyError::Timeout { .. })));
        assert!(answers[999].is_ok());
    }

    #[test]
    fn a_policy_that_always_fails_is_called_a_bounded_number_of_times() {
        let items: Vec<u32> = (0..1000).collect();
        let mut calls = 0;
        let mut always_bad = |_: &[u32]| -> Result<Vec<u32>, CallFailure> {
            calls += 1;
            Err(CallFailure::Batch(trap()))
        };
        let answers = isolate(&items, &mut always_bad);
        assert_eq!(answers.len(), 1000);
        assert!(answers.iter().all(Result::is_err));
        assert!(calls <= MAX_FAILED_CALLS, "{calls} calls");
    }

    #[test]
    fn failures_independent_of_input_are_not_bisected() {
        let items: Vec<u32> = (0..1000).collect();
        let mut calls = 0;
        let mut broken = |_: &[u32]| -> Result<Vec<u32>, CallFailure> {
            calls += 1;
            Err(CallFailure::Always(trap()))
        };
        let answers = isolate(&items, &mut broken);
        assert_eq!(calls, 1);
        assert!(answers.iter().all(Result::is_err));
    }
}
