//! `essync --ranges N KEYSPACE:TABLE PERIOD`: a process that shares a table with the others
//! started with the same N. It keeps a member row while it runs, claims free ranges up to its
//! fair share (N over the processes sharing the table, rounded up), gives up what it holds
//! beyond that share when another process joins, and syncs each range it holds as a sync of its
//! own ([`Syncer`] under the range's lease), side by side. See [`essync::sync::ranges`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use essync::cassandra::{CassandraStore, TokenRange};
use essync::elasticsearch::ElasticsearchStore;
use essync::policy::{Policy, PolicyReload};
use essync::sync::ranges::{self, Member};
use essync::sync::state::lease::Claim;
use essync::sync::{Holder, Lease, Metrics, Stop, SyncError, SyncOptions, Syncer};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

/// How often the process looks at who holds what: how soon a free range is taken up.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// What every range's sync is made of.
pub(super) struct Shared {
    pub elasticsearch: Arc<ElasticsearchStore>,
    pub cassandra: Arc<CassandraStore>,
    /// The policy in use now: a reload publishes the new one, which each range takes up at its
    /// next round.
    pub policy: tokio::sync::watch::Sender<Policy>,
    /// Loads the policy file again when asked (SIGHUP) or when it changes.
    pub reload: Option<tokio::sync::Mutex<PolicyReload>>,
    pub options: SyncOptions,
    pub period: Duration,
    pub once: bool,
    pub ttl: Duration,
    pub metrics: Option<Arc<Metrics>>,
}

/// The ranges this process syncs: each one's stop, and the ends of their syncs. Each range is
/// synced on a thread of its own, which drives its rounds on the runtime (a round's future is
/// not `Send`, so it cannot be spawned as a task): the ranges use the cores side by side.
#[derive(Default)]
struct Running {
    stops: BTreeMap<u32, Stop>,
    syncs: FuturesUnordered<BoxFuture<'static, (u32, RangeEnd)>>,
}

/// How a range's sync ended: its result, or `None` when its thread died without one.
type RangeEnd = Option<Result<(), SyncError>>;

impl Running {
    fn len(&self) -> usize {
        self.stops.len()
    }

    fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    fn holds(&self, index: u32) -> bool {
        self.stops.contains_key(&index)
    }

    fn stop_all(&self) {
        self.stops.values().for_each(Stop::trigger);
    }

    /// Waits for the next range whose sync ends (never, when none runs), and says what its end
    /// means for the process (see [`finished`]).
    async fn next_end(&mut self) -> anyhow::Result<()> {
        match self.syncs.next().await {
            Some((index, result)) => {
                self.stops.remove(&index);
                finished(result)
            }
            None => std::future::pending().await,
        }
    }
}

/// Runs until `stop` (or, with `once`, until each range of this process's share had a round).
pub(super) async fn run(shared: Shared, count: u32, stop: &Stop) -> anyhow::Result<()> {
    let shared = Arc::new(shared);
    let mut member = Member::join(&shared.cassandra, shared.ttl).await?;
    // Processes started together (a Deployment's replicas) find each other before claiming:
    // each then takes its share at once, rather than the first taking all and handing ranges
    // over at its next look.
    if stop.sleep(LOOK_EVERY).await {
        member.leave().await;
        return Ok(());
    }
    let mut running = Running::default();
    let mut waiting_for = None;
    let mut claimed_once = false;
    let result = loop {
        if stop.is_set() || (shared.once && claimed_once && running.is_empty()) {
            break Ok(());
        }
        match look(&shared, &mut member, count, &mut running, &mut waiting_for).await {
            Ok(claimed) => claimed_once |= claimed || !running.is_empty(),
            Err(e) if e.is_transient() => tracing::warn!("{e}; looking again in a moment"),
            Err(e) => break Err(e.into()),
        }
        let pause = stop.sleep(LOOK_EVERY);
        tokio::select! {
            ended = running.next_end() => if let Err(e) = ended { break Err(e) },
            stopped = pause => if stopped { break Ok(()) },
        }
    };
    running.stop_all();
    let mut ended = Ok(());
    while !running.is_empty() {
        if let Err(e) = running.next_end().await {
            ended = Err(e);
        }
    }
    member.leave().await;
    result.and(ended)
}

/// One look at the table's leases: joins the others, waits while a process of another range
/// count holds some, then claims free ranges up to this process's share, or gives up what it
/// holds beyond it. Returns whether it claimed any.
async fn look(
    shared: &Arc<Shared>,
    member: &mut Member,
    count: u32,
    running: &mut Running,
    waiting_for: &mut Option<uuid::Uuid>,
) -> Result<bool, SyncError> {
    member.renew().await?;
    if let Some(reload) = &shared.reload
        && let Some(policy) = reload.lock().await.check().await
    {
        shared.policy.send_replace(policy);
    }
    let config = shared.cassandra.config();
    let leases = member.table_leases().await?;
    if let Some((other, holder)) = leases.other_count(count) {
        if *waiting_for != Some(holder.owner) {
            tracing::info!(
                "{}.{} is synced in {} range(s) by another essync ({holder}); this one syncs \
                 it in {count} and waits until that one stops (pass --ranges {} to share the \
                 work with it)",
                config.keyspace,
                config.table,
                other.count,
                other.count
            );
            *waiting_for = Some(holder.owner);
        }
        return Ok(false);
    }
    *waiting_for = None;
    // A process of this host that no longer runs shares nothing, and holds nothing.
    let alive = |holder: &Holder| !holder.gone_from_this_host();
    let members: Vec<&Holder> = leases.members.iter().filter(|m| alive(m)).collect();
    let (least, most) = fair_share(count, members.len());
    // Ranges already told to stop are on their way out: they count for nobody.
    let active = running.stops.values().filter(|stop| !stop.is_set()).count();
    let holds = |member: &Holder| {
        let same = |holder: &Holder| holder.host == member.host && holder.pid == member.pid;
        leases
            .ranges
            .iter()
            .filter(|(_, holder)| same(holder))
            .count()
    };
    let me = member.me();
    let is_me = |holder: &Holder| holder.host == me.host && holder.pid == me.pid;
    // Another process holds less than the least any should (it has just joined).
    let starving = members
        .iter()
        .any(|member| !is_me(member) && holds(member) < least);
    // Another process joined: what this one holds beyond the most any should hold is given up
    // (each range ends its page, saves its checkpoint and releases its lease), and one more
    // while another holds less than the least any should: the newcomer takes them up.
    let give_up = if active > most {
        active - most
    } else if active > least && starving {
        1
    } else {
        0
    };
    if give_up > 0 {
        let stops = running.stops.values().rev().filter(|stop| !stop.is_set());
        stops.take(give_up).for_each(Stop::trigger);
        return Ok(false);
    }
    // While another starves, this one takes no more than the least, leaving it the rest.
    let share = if starving { least } else { most };
    if running.len() >= share || (shared.once && !running.is_empty()) {
        return Ok(false);
    }
    let taken: Vec<u32> = leases
        .ranges
        .iter()
        .filter(|(_, holder)| alive(holder))
        .map(|(range, _)| range.index)
        .collect();
    let free: Vec<TokenRange> = TokenRange::parts(count)
        .filter(|range| !taken.contains(&range.index) && !running.holds(range.index))
        .collect();
    if free.is_empty() {
        return Ok(false);
    }
    if running.is_empty() {
        // Every range of this count gets its starting point before the first is synced.
        ranges::prepare(
            &shared.cassandra,
            &shared.elasticsearch,
            count,
            shared.options.reconcile,
        )
        .await?;
    }
    // Processes that look at once start at different places, and rarely race for one range.
    let offset = member.me().owner.as_u128() as usize % free.len();
    let mut claimed = false;
    for range in free.iter().cycle().skip(offset).take(free.len()) {
        if running.len() >= share {
            break;
        }
        let mut lease = Lease::of_range(&shared.cassandra, *range, shared.ttl).await?;
        if let Claim::Held = lease.claim().await? {
            tracing::info!("syncing {range} of {}.{}", config.keyspace, config.table);
            match start(shared.clone(), lease, running) {
                Ok(()) => claimed = true,
                // Its lease lapses after the TTL, and a process takes the range up then.
                Err(e) => tracing::error!("cannot start a thread to sync {range}: {e}"),
            }
        }
    }
    Ok(claimed)
}

/// The least and the most ranges of `count` each of `members` processes should hold: an even
/// split, the remainder spread one each.
fn fair_share(count: u32, members: usize) -> (usize, usize) {
    let (count, members) = (count as usize, members.max(1));
    (count / members, count.div_ceil(members))
}

/// Starts syncing the range of `lease`, beside the others.
fn start(shared: Arc<Shared>, lease: Lease, running: &mut Running) -> std::io::Result<()> {
    let stop = Stop::new();
    let range = lease.range();
    let span = tracing::info_span!("range", range = range.index + 1);
    let sync_stop = stop.clone();
    let (ended, end) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(format!("essync-range-{}", range.index + 1))
        .spawn(move || {
            let sync = sync_range(shared, lease, sync_stop);
            let _ = ended.send(runtime.block_on(tracing::Instrument::instrument(sync, span)));
        })?;
    running.stops.insert(range.index, stop);
    running
        .syncs
        .push(async move { (range.index, end.await.ok()) }.boxed());
    Ok(())
}

/// Syncs the range of `lease` until `stop` (or its one round, with `once`).
async fn sync_range(shared: Arc<Shared>, lease: Lease, stop: Stop) -> Result<(), SyncError> {
    let range = lease.range();
    // `-s` was given to every range at once, by its starting point (see `ranges::prepare`): a
    // range taken over from another process resumes its checkpoint instead of reconciling again.
    let options = SyncOptions {
        range,
        reconcile: false,
        ..shared.options.clone()
    };
    let policy = shared.policy.borrow().clone();
    let mut syncer = Syncer::start(
        shared.elasticsearch.clone(),
        shared.cassandra.clone(),
        policy,
        options,
    )
    .await?
    .with_lease(lease)
    .with_policy_updates(shared.policy.subscribe());
    if let Some(metrics) = &shared.metrics {
        syncer = syncer.with_metrics(metrics.clone());
    }
    // Its lease is given up at the end (see `Syncer::run`), unless it was lost.
    syncer.run(shared.period, shared.once, &stop).await
}

/// What the end of a range's sync means for the process: one that lost its lease is only said
/// (the process goes on with the others); any other failure ends the process.
fn finished(ended: RangeEnd) -> anyhow::Result<()> {
    match ended {
        Some(Ok(())) => Ok(()),
        Some(Err(e @ SyncError::LeaseLost { .. })) => {
            tracing::warn!("{e}");
            Ok(())
        }
        Some(Err(e)) => Err(e.into()),
        None => Err(anyhow::anyhow!("the sync of a range ended abnormally")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fair_share_spreads_the_remainder() {
        assert_eq!(fair_share(4, 1), (4, 4));
        assert_eq!(fair_share(4, 2), (2, 2));
        assert_eq!(fair_share(4, 3), (1, 2));
        assert_eq!(fair_share(2, 3), (0, 1));
        // No member row read yet (the process's own is written first): as if alone.
        assert_eq!(fair_share(4, 0), (4, 4));
    }
}
