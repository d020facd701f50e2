//! Sagas: steps keyed by correlation id, each with an optional compensation that runs in
//! reverse order when a later step fails for good.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use syncbus_core::{Envelope, Payload, SubscribeError};
use syncbus_envelope::Timestamp;

use crate::context::Context;
use crate::error::{ErrorKind, HandlerError};
use crate::layers::RetryPolicy;
use crate::storable::Storable;
use crate::store::IntoArc;
use crate::store::{
    MemorySagaStore, SagaInstance, SagaStatus, SagaStepRecord, SagaStore, StepAction, StoreError,
};
use crate::workflow::{Workflow, WorkflowSubscription};
use crate::BoxFuture;

type StepFn<D> =
    Arc<dyn Fn(D, Context) -> BoxFuture<'static, Result<D, HandlerError>> + Send + Sync>;
type CompFn<D> =
    Arc<dyn Fn(D, Context) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

struct Step<D> {
    name: String,
    run: StepFn<D>,
    compensate: Option<CompFn<D>>,
}

/// A saga: named steps run in order on a piece of data `D`, keyed by the correlation id of
/// the event that started it.
///
/// Each step gets the data and the triggering event's [`Context`] and returns the data
/// updated; events it emits are published when the step succeeds (so they carry the saga's
/// correlation id). A step failing with a retryable error is retried by the saga's
/// [`RetryPolicy`], each attempt limited by the step timeout (a timeout is retryable). When a
/// step fails for good, the compensations of the steps that completed run in reverse order
/// (retried the same way) and the instance ends
/// [`FailedCompensated`](SagaStatus::FailedCompensated); if a compensation fails for good the
/// instance ends [`Failed`](SagaStatus::Failed) and the triggering event is dead-lettered.
///
/// The instance (status, step, data, history) is saved after every step, so
/// [`RunningSaga::instance`] shows where it is; a redelivered trigger event resumes an
/// unfinished instance from its saved step (steps must be idempotent) and leaves a finished
/// one alone.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use syncbus_core::{Bus, Event};
/// use syncbus_workflow::{HandlerError, Saga, Workflow};
/// use syncbus_storage::SagaStatus;
///
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// struct OrderPlaced { order: u64 }
/// impl Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
///
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// struct Order { id: u64, reserved: bool, charged: bool }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let wf = Workflow::new(&bus);
/// let saga = Saga::<Order>::new("fulfilment")
///     .step("reserve", |mut o, _ctx| async move { o.reserved = true; Ok(o) })
///     .compensate(|_o, _ctx| async move { Ok(()) })
///     .step("charge", |mut o, _ctx| async move { o.charged = true; Ok(o) });
/// let running = saga.start_on::<OrderPlaced>(&wf, "shop.order.placed", |e| Order {
///     id: e.payload().order,
///     ..Order::default()
/// })?;
/// let env = syncbus_core::Envelope::from_event(OrderPlaced { order: 9 });
/// let id = env.meta().id().to_string(); // a root event: its id is the correlation id
/// bus.publish_envelope(env).await?;
/// bus.shutdown(std::time::Duration::from_secs(1)).await;
/// let inst = running.instance(&id).await?.unwrap();
/// assert_eq!(inst.status, SagaStatus::Completed);
/// # Ok(()) }
/// ```
pub struct Saga<D> {
    name: String,
    steps: Vec<Step<D>>,
    store: Arc<dyn SagaStore>,
    retry: RetryPolicy,
    step_timeout: Option<Duration>,
}

impl<D> fmt::Debug for Saga<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.name)
            .field(
                "steps",
                &self.steps.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<D> Saga<D>
where
    D: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// An empty saga named `name`, with an in-memory store, the default retry policy and
    /// no step timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Order { reserved: bool }
    /// let saga = syncbus_workflow::Saga::<Order>::new("fulfilment");
    /// # let _ = saga;
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Saga {
            name: name.into(),
            steps: Vec::new(),
            store: Arc::new(MemorySagaStore::new()),
            retry: RetryPolicy::default(),
            step_timeout: None,
        }
    }

    /// Adds a step.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Order { reserved: bool }
    /// let saga = syncbus_workflow::Saga::<Order>::new("fulfilment")
    ///     .step("reserve", |mut o, _ctx| async move { o.reserved = true; Ok(o) });
    /// # let _ = saga;
    /// ```
    pub fn step<F, Fut>(mut self, name: impl Into<String>, run: F) -> Self
    where
        F: Fn(D, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<D, HandlerError>> + Send + 'static,
    {
        self.steps.push(Step {
            name: name.into(),
            run: Arc::new(move |d, c| Box::pin(run(d, c))),
            compensate: None,
        });
        self
    }

    /// Gives the last step added a compensation (it gets the data as the step left it).
    ///
    /// # Panics
    ///
    /// Never; without a step it does nothing but log an error.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Order { reserved: bool }
    /// use syncbus_workflow::{HandlerError, Saga};
    /// let saga = Saga::<Order>::new("fulfilment")
    ///     .step("reserve", |mut o, _ctx| async move { o.reserved = true; Ok(o) })
    ///     .compensate(|_o, _ctx| async move { Ok(()) }) // release the reservation
    ///     .step("charge", |_o, _ctx| async move { Err(HandlerError::permanent("card declined")) });
    /// # let _ = saga;
    /// ```
    pub fn compensate<F, Fut>(mut self, comp: F) -> Self
    where
        F: Fn(D, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        match self.steps.last_mut() {
            Some(step) => step.compensate = Some(Arc::new(move |d, c| Box::pin(comp(d, c)))),
            None => tracing::error!(saga = %self.name, "compensate() before any step: ignored"),
        }
        self
    }

    /// Where instances are kept (default: in memory).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct D;
    /// let saga = syncbus_workflow::Saga::<D>::new("s")
    ///     .store(syncbus_storage::MemorySagaStore::new());
    /// ```
    pub fn store(mut self, store: impl IntoArc<dyn SagaStore>) -> Self {
        let store = store.into_arc();
        self.store = store;
        self
    }

    /// How failed steps and compensations are retried.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct D;
    /// let saga = syncbus_workflow::Saga::<D>::new("s").retry(syncbus_workflow::RetryPolicy::never());
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Each attempt of a step or compensation may take at most `d`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct D;
    /// let saga = syncbus_workflow::Saga::<D>::new("s").step_timeout(std::time::Duration::from_secs(30));
    /// ```
    pub fn step_timeout(mut self, d: Duration) -> Self {
        self.step_timeout = Some(d);
        self
    }

    /// Starts an instance for every event of type `E` on `pattern`, with data made by
    /// `init`. The subscription is named after the saga.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] as [`Workflow::subscribe`] gives it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Order { reserved: bool }
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct OrderPlaced;
    /// # impl syncbus_core::Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// let running = syncbus_workflow::Saga::<Order>::new("fulfilment")
    ///     .step("reserve", |mut o, _ctx| async move { o.reserved = true; Ok(o) })
    ///     .start_on::<OrderPlaced>(&wf, "shop.order.*", |_e| Order::default())?;
    /// assert_eq!(running.metrics().succeeded, 0);
    /// # Ok(()) }
    /// ```
    pub fn start_on<E>(
        self,
        wf: &Workflow,
        pattern: &str,
        init: impl Fn(&Envelope<E>) -> D + Send + Sync + 'static,
    ) -> Result<RunningSaga, SubscribeError>
    where
        E: Payload + Storable,
    {
        let name = self.name.clone();
        let store = self.store.clone();
        let saga = Arc::new(self);
        let s = saga.clone();
        let init = Arc::new(init);
        let sub = wf
            .subscribe::<E>(pattern)?
            .name(name.as_str())
            .no_retry()
            .handle(move |env: Envelope<E>, ctx: Context| {
                let (saga, init) = (s.clone(), init.clone());
                let data = init(&env);
                // Boxed: the saga's own future is deep, and the stack nests it further.
                let run: BoxFuture<'static, Result<(), HandlerError>> =
                    Box::pin(async move { saga.run(data, ctx).await });
                run
            })?;
        Ok(RunningSaga {
            name,
            store,
            _sub: sub,
        })
    }

    async fn run(&self, data: D, ctx: Context) -> Result<(), HandlerError> {
        let id = ctx.correlation_id().to_string();
        let now = Timestamp::now();
        let fresh = SagaInstance {
            saga: self.name.clone(),
            id: id.clone(),
            status: SagaStatus::Running,
            step: 0,
            data: to_json(&data)?,
            error: None,
            history: Vec::new(),
            started: now,
            updated: now,
            version: 1,
        };
        let mut inst = if self.store.create(&fresh).await.map_err(store_err)? {
            fresh
        } else {
            match self.store.load(&self.name, &id).await.map_err(store_err)? {
                Some(i) if i.status.is_final() => {
                    tracing::debug!(saga = %self.name, id, "instance finished already");
                    return Ok(());
                }
                Some(i) => i,
                None => return Err(HandlerError::retryable("saga instance vanished")),
            }
        };
        let mut data: D = serde_json::from_value(inst.data.clone())
            .map_err(|e| HandlerError::new(ErrorKind::Decode, format!("saga data: {e}")))?;

        while inst.status == SagaStatus::Running && (inst.step as usize) < self.steps.len() {
            let step = &self.steps[inst.step as usize];
            let (result, attempts) = self.attempt(&ctx, |c| (step.run)(data.clone(), c)).await;
            match result {
                Ok(next) => {
                    data = next;
                    inst.data = to_json(&data)?;
                    inst.history
                        .push(record(&step.name, StepAction::Run, None, attempts));
                    inst.step += 1;
                    if inst.step as usize == self.steps.len() {
                        inst.status = SagaStatus::Completed;
                    }
                }
                Err(e) => {
                    inst.history
                        .push(record(&step.name, StepAction::Run, Some(&e), attempts));
                    inst.error = Some(e.to_string());
                    inst.status = SagaStatus::Compensating;
                    tracing::warn!(saga = %self.name, id, step = %step.name, error = %e, "saga step failed: compensating");
                    // The chain shows which step failed and why, beside the saga's own
                    // handling (which succeeds: it compensated).
                    if let Some(chains) = ctx.chains() {
                        chains.handled(
                            ctx.meta(),
                            &format!("{} step {}", ctx.subscription(), step.name),
                            Err(format!("failed: {e}")),
                        );
                    }
                }
            }
            self.save(&mut inst).await?;
        }

        // Compensate the completed steps, last first. `inst.step` is the failed step's index,
        // so the steps below it completed.
        while inst.status == SagaStatus::Compensating {
            let Some(i) = inst.step.checked_sub(1) else {
                inst.status = SagaStatus::FailedCompensated;
                self.save(&mut inst).await?;
                break;
            };
            let step = &self.steps[i as usize];
            let Some(comp) = &step.compensate else {
                inst.step = i;
                continue;
            };
            let (result, attempts) = self.attempt(&ctx, |c| comp(data.clone(), c)).await;
            match result {
                Ok(()) => {
                    inst.history
                        .push(record(&step.name, StepAction::Compensate, None, attempts));
                    inst.step = i;
                    self.save(&mut inst).await?;
                }
                Err(e) => {
                    inst.history.push(record(
                        &step.name,
                        StepAction::Compensate,
                        Some(&e),
                        attempts,
                    ));
                    inst.status = SagaStatus::Failed;
                    self.save(&mut inst).await?;
                    return Err(HandlerError::permanent(format!(
                        "saga {} instance {id}: compensation of {} failed: {e}",
                        self.name, step.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs one step or compensation with retries and the step timeout; publishes its
    /// follow-ups when it succeeds.
    async fn attempt<T, F>(&self, ctx: &Context, f: F) -> (Result<T, HandlerError>, u32)
    where
        F: Fn(Context) -> BoxFuture<'static, Result<T, HandlerError>>,
    {
        let mut previous = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            ctx.begin_attempt();
            let fut = crate::handler::catch_panic_value(f(ctx.clone()));
            let r = match self.step_timeout {
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(HandlerError::new(
                        ErrorKind::Timeout,
                        format!("step timed out after {t:?}"),
                    )),
                },
                None => fut.await,
            };
            let r = match r {
                Ok(v) => ctx.flush().await.map(|()| v),
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => return (Ok(v), attempt),
                Err(e) if !e.is_retryable() || attempt >= self.retry.attempt_limit() => {
                    return (Err(e), attempt)
                }
                Err(e) => {
                    let delay = e
                        .retry_after_hint()
                        .unwrap_or_else(|| self.retry.delay(attempt, previous));
                    previous = delay;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn save(&self, inst: &mut SagaInstance) -> Result<(), HandlerError> {
        inst.version += 1;
        inst.updated = Timestamp::now();
        self.store.save(inst).await.map_err(store_err)
    }
}

fn record(
    step: &str,
    action: StepAction,
    err: Option<&HandlerError>,
    attempts: u32,
) -> SagaStepRecord {
    SagaStepRecord {
        step: step.to_owned(),
        action,
        ok: err.is_none(),
        error: err.map(ToString::to_string),
        attempts,
        at: Timestamp::now(),
    }
}

fn to_json<D: Serialize>(d: &D) -> Result<serde_json::Value, HandlerError> {
    serde_json::to_value(d)
        .map_err(|e| HandlerError::permanent(format!("saga data does not serialize: {e}")))
}

fn store_err(e: StoreError) -> HandlerError {
    HandlerError::retryable(format!("saga store: {e}")).with_source(e)
}

/// A saga listening for its trigger events. Dropping it stops starting instances.
///
/// # Examples
///
/// ```
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Order;
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct OrderPlaced;
/// # impl syncbus_core::Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_workflow::{Saga, Workflow};
/// let bus = syncbus_core::Bus::new();
/// let wf = Workflow::new(&bus);
/// let running = Saga::<Order>::new("fulfilment")
///     .step("noop", |o, _ctx| async move { Ok(o) })
///     .start_on::<OrderPlaced>(&wf, "shop.order.placed", |_e| Order)?;
/// bus.publish(OrderPlaced).await?;
/// bus.shutdown(std::time::Duration::from_secs(1)).await;
/// assert_eq!(running.instances(None).await?.len(), 1);
/// drop(running); // no more instances start
/// # Ok(()) }
/// ```
///
/// A saga started as a statement would stop at once, so it is `#[must_use]`:
///
/// ```compile_fail
/// # #![deny(unused_must_use)]
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Order;
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct OrderPlaced;
/// # impl syncbus_core::Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use syncbus_workflow::{Saga, Workflow};
/// # let bus = syncbus_core::Bus::new();
/// # let wf = Workflow::new(&bus);
/// Saga::<Order>::new("fulfilment")
///     .step("noop", |o, _ctx| async move { Ok(o) })
///     .start_on::<OrderPlaced>(&wf, "shop.order.placed", |_e| Order)?; // error: unused
/// # Ok(()) }
/// ```
#[must_use = "dropping a RunningSaga stops starting instances at once"]
pub struct RunningSaga {
    name: String,
    store: Arc<dyn SagaStore>,
    _sub: WorkflowSubscription,
}

impl fmt::Debug for RunningSaga {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSaga")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RunningSaga {
    /// One instance by id (the correlation id of its trigger event).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the saga store.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Order { reserved: bool }
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct OrderPlaced;
    /// # impl syncbus_core::Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// let running = syncbus_workflow::Saga::<Order>::new("fulfilment")
    ///     .step("reserve", |mut o, _ctx| async move { o.reserved = true; Ok(o) })
    ///     .start_on::<OrderPlaced>(&wf, "shop.order.*", |_e| Order::default())?;
    /// assert!(running.instance("no-such-correlation-id").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn instance(&self, id: &str) -> Result<Option<SagaInstance>, StoreError> {
        self.store.load(&self.name, id).await
    }

    /// The instances, optionally only those with `status`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the saga store.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn show(running: &syncbus_workflow::RunningSaga) -> Result<(), syncbus_storage::StoreError> {
    /// for inst in running.instances(Some(syncbus_storage::SagaStatus::Failed)).await? {
    ///     println!("{} needs an operator: {:?}", inst.id, inst.error);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn instances(
        &self,
        status: Option<SagaStatus>,
    ) -> Result<Vec<SagaInstance>, StoreError> {
        self.store.list(&self.name, status).await
    }

    /// The workflow subscription's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn show(running: &syncbus_workflow::RunningSaga) {
    /// println!("{} instances failed", running.metrics().failed);
    /// # }
    /// ```
    pub fn metrics(&self) -> crate::WorkflowMetrics {
        self._sub.metrics()
    }
}
