//! `PEXIP_MAX_CONCURRENCY` slots shared by priority.
//!
//! The total in flight never exceeds the cap (the Management Node's protection). Within it:
//! - a freed slot goes to a waiting create first, then to a waiting caller request (a delete or
//!   a look-up), then to background work (refills, the maintainer, GC, lists, bulk deletes);
//!   FIFO within a class;
//! - caller requests and background work together never hold the last slot (cap ≥ 2): one is
//!   always kept for creates;
//! - background work also leaves as many slots as creates have recently needed at once (their
//!   peak over the last one to two [`DEMAND_WINDOW`]s), so that the brief gap between two creates
//!   of a burst does not hand their slots to refills. The pool is the buffer: refills can wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a burst of creates keeps its slots reserved from background work after its peak.
pub const DEMAND_WINDOW: Duration = Duration::from_millis(500);

/// Who a Pexip request is for; earlier variants take precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A create's critical path (and the return of a room it did not hand out).
    Create,
    /// A caller waits for it: a delete, a room look-up or update.
    Caller,
    /// Nobody waits: refills, timers, lists and bulk work.
    Background,
}

const CLASSES: [Priority; 3] = [Priority::Create, Priority::Caller, Priority::Background];

impl Priority {
    fn index(self) -> usize {
        self as usize
    }
}

pub(crate) struct Gate {
    cap: usize,
    state: Mutex<State>,
}

struct State {
    in_use: [usize; 3],
    waiting: [VecDeque<oneshot::Sender<()>>; 3],
    demand: Demand,
}

/// Peak create demand (in flight + waiting) in the current and the previous window.
struct Demand {
    window_start: Instant,
    current: usize,
    previous: usize,
}

impl Demand {
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= DEMAND_WINDOW * 2 {
            self.previous = 0;
            self.current = 0;
            self.window_start = now;
        } else if elapsed >= DEMAND_WINDOW {
            self.previous = self.current;
            self.current = 0;
            self.window_start += DEMAND_WINDOW;
        }
    }
}

/// One slot, given back when dropped.
pub(crate) struct Permit {
    gate: Arc<Gate>,
    class: Priority,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.in_use[self.class.index()] -= 1;
        self.gate.grant(&mut state);
    }
}

/// A place in a queue. Dropped before its slot arrived (the request was cancelled), it leaves
/// the queue; dropped after, it gives the slot back.
struct Waiter {
    gate: Arc<Gate>,
    class: Priority,
    slot: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        self.slot.close();
        if self.slot.try_recv().is_ok() {
            let mut state = self.gate.lock();
            state.in_use[self.class.index()] -= 1;
            self.gate.grant(&mut state);
        }
    }
}

impl Gate {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            state: Mutex::new(State {
                in_use: [0; 3],
                waiting: Default::default(),
                demand: Demand {
                    window_start: Instant::now(),
                    current: 0,
                    previous: 0,
                },
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot of `class`. Cancel-safe: dropping the future never loses a slot.
    pub(crate) async fn acquire(self: &Arc<Self>, class: Priority) -> Permit {
        let slot = {
            let mut state = self.lock();
            let now = Instant::now();
            for queue in &mut state.waiting {
                queue.retain(|tx| !tx.is_closed());
            }
            if class == Priority::Create {
                let demand = state.in_use[0] + state.waiting[0].len() + 1;
                state.demand.roll(now);
                state.demand.current = state.demand.current.max(demand);
            }
            // Nobody of this class or above is queued, and the rules admit one more.
            let queued_ahead = state.waiting[..=class.index()]
                .iter()
                .any(|q| !q.is_empty());
            if !queued_ahead && self.admits(&mut state, class, now) {
                state.in_use[class.index()] += 1;
                return Permit {
                    gate: Arc::clone(self),
                    class,
                };
            }
            let (tx, rx) = oneshot::channel();
            state.waiting[class.index()].push_back(tx);
            rx
        };
        let mut waiter = Waiter {
            gate: Arc::clone(self),
            class,
            slot,
            granted: false,
        };
        loop {
            // Background work is held back by recent demand, which fades with time alone:
            // look again once a window has passed even if no slot was freed meanwhile.
            match tokio::time::timeout(DEMAND_WINDOW, &mut waiter.slot).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => unreachable!("the gate never drops a waiting sender"),
                Err(_) => self.grant(&mut self.lock()),
            }
        }
        waiter.granted = true;
        Permit {
            gate: Arc::clone(self),
            class,
        }
    }

    /// Whether one more request of `class` may start now, queues aside.
    fn admits(&self, state: &mut State, class: Priority, now: Instant) -> bool {
        let total: usize = state.in_use.iter().sum();
        if total >= self.cap {
            return false;
        }
        let creates_waiting = !state.waiting[0].is_empty();
        let others = state.in_use[1] + state.in_use[2];
        // One slot stays free for creates whenever there is more than one.
        let kept = usize::from(self.cap > 1);
        match class {
            Priority::Create => true,
            Priority::Caller => !creates_waiting && others < self.cap - kept,
            Priority::Background => {
                state.demand.roll(now);
                let live = state.in_use[0] + state.waiting[0].len();
                let recent = live.max(state.demand.current).max(state.demand.previous);
                let reserve = recent.max(kept).min(self.cap);
                !creates_waiting && state.waiting[1].is_empty() && others < self.cap - reserve
            }
        }
    }

    /// Hands freed slots to the waiters they belong to, highest class first.
    fn grant(&self, state: &mut State) {
        let now = Instant::now();
        for class in CLASSES {
            while let Some(front) = state.waiting[class.index()].front() {
                if front.is_closed() {
                    state.waiting[class.index()].pop_front();
                    continue;
                }
                if !self.admits(state, class, now) {
                    // A class that cannot start leaves nothing a lower one could take.
                    return;
                }
                let tx = state.waiting[class.index()]
                    .pop_front()
                    .expect("front exists");
                state.in_use[class.index()] += 1;
                if tx.send(()).is_err() {
                    state.in_use[class.index()] -= 1;
                }
            }
        }
    }

    /// Slots in use by class, for tests and diagnostics.
    #[cfg(test)]
    fn in_use(&self) -> [usize; 3] {
        self.lock().in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Starts a task that takes a slot of `class` and holds it until told; reports when it has it.
    fn holder(
        gate: &Arc<Gate>,
        class: Priority,
        order: &Arc<Mutex<Vec<&'static str>>>,
        label: &'static str,
    ) -> oneshot::Sender<()> {
        let (release, released) = oneshot::channel::<()>();
        let gate = Arc::clone(gate);
        let order = Arc::clone(order);
        tokio::spawn(async move {
            let _permit = gate.acquire(class).await;
            order.lock().unwrap().push(label);
            let _ = released.await;
        });
        release
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_a_waiting_create_before_older_background_work() {
        let gate = Gate::new(2);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = holder(&gate, Priority::Create, &order, "create-1");
        let second = holder(&gate, Priority::Create, &order, "create-2");
        settle().await;
        assert_eq!(gate.in_use(), [2, 0, 0]);
        let _bg = holder(&gate, Priority::Background, &order, "background");
        settle().await;
        let _caller = holder(&gate, Priority::Caller, &order, "caller");
        settle().await;
        let _create = holder(&gate, Priority::Create, &order, "create-3");
        settle().await;
        drop(first);
        settle().await;
        assert_eq!(
            *order.lock().unwrap(),
            ["create-1", "create-2", "create-3"],
            "the create arrived last and got the slot"
        );
        drop(second);
        settle().await;
        assert_eq!(order.lock().unwrap()[3], "caller");
        assert_eq!(
            gate.in_use(),
            [1, 1, 0],
            "background work waits while creates just needed both slots"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn background_work_never_takes_the_last_slot() {
        let gate = Gate::new(3);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut held = Vec::new();
        for label in ["bg-1", "bg-2", "bg-3"] {
            held.push(holder(&gate, Priority::Background, &order, label));
        }
        settle().await;
        assert_eq!(gate.in_use(), [0, 0, 2]);
        // Long after any create demand: still one slot kept.
        tokio::time::sleep(DEMAND_WINDOW * 4).await;
        settle().await;
        assert_eq!(gate.in_use(), [0, 0, 2]);
        let _create = holder(&gate, Priority::Create, &order, "create");
        settle().await;
        assert_eq!(gate.in_use(), [1, 0, 2], "a create starts at once");
    }

    #[tokio::test(start_paused = true)]
    async fn background_work_leaves_the_slots_a_burst_of_creates_just_used() {
        let gate = Gate::new(5);
        let order = Arc::new(Mutex::new(Vec::new()));
        // Four creates at once, then they all finish: their slots stay reserved for a while.
        let creates: Vec<_> = (0..4)
            .map(|_| holder(&gate, Priority::Create, &order, "create"))
            .collect();
        settle().await;
        assert_eq!(gate.in_use(), [4, 0, 0]);
        drop(creates);
        settle().await;
        let background: Vec<_> = (0..4)
            .map(|_| holder(&gate, Priority::Background, &order, "bg"))
            .collect();
        settle().await;
        assert_eq!(gate.in_use(), [0, 0, 1], "5 slots, 4 kept for the burst");
        // The burst is over: its reserve fades within two windows, without any slot freed.
        tokio::time::sleep(DEMAND_WINDOW * 3).await;
        settle().await;
        assert_eq!(
            gate.in_use(),
            [0, 0, 4],
            "only the one kept slot stays free"
        );
        drop(background);
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_never_exceeds_the_cap_and_cancelled_waiters_lose_no_slot() {
        let gate = Gate::new(2);
        let a = gate.acquire(Priority::Create).await;
        let b = gate.acquire(Priority::Create).await;
        // A waiter that gives up before its slot comes, and one dropped right after the grant.
        let gone = tokio::time::timeout(Duration::from_millis(10), gate.acquire(Priority::Create));
        assert!(gone.await.is_err());
        let mut late = Box::pin(gate.acquire(Priority::Caller));
        assert!(futures::poll!(&mut late).is_pending());
        drop(a); // granted to `late` (the cancelled create left the queue) …
        drop(late); // … which gives it back unused
        assert_eq!(gate.in_use(), [1, 0, 0]);
        let c = gate.acquire(Priority::Create).await;
        assert_eq!(gate.in_use(), [2, 0, 0]);
        drop((b, c));
        assert_eq!(gate.in_use(), [0, 0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn with_one_slot_background_runs_when_no_create_wants_it() {
        let gate = Gate::new(1);
        let bg = gate.acquire(Priority::Background).await;
        let mut create = Box::pin(gate.acquire(Priority::Create));
        assert!(futures::poll!(&mut create).is_pending());
        let mut later_bg = Box::pin(gate.acquire(Priority::Background));
        assert!(futures::poll!(&mut later_bg).is_pending());
        drop(bg);
        let create = create.await;
        assert!(futures::poll!(&mut later_bg).is_pending());
        drop(create);
        tokio::time::sleep(DEMAND_WINDOW * 3).await;
        let _bg = later_bg.await;
    }
}
