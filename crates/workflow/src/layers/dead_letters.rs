//! The dead-letter layer: failures that retries could not fix are recorded, never lost.

use std::sync::Arc;

use syncbus_envelope::{Bytes, Envelope, Timestamp};

use crate::context::Context;
use crate::error::{ErrorKind, HandlerError};
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;
use crate::storable::Storable;
use crate::store::IntoArc;
use crate::store::{DeadLetterRecord, DeadLetterStore};

/// Makes [`DeadLetters`] handlers.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use syncbus_workflow::DeadLettersLayer;
/// use syncbus_storage::MemoryDeadLetterStore;
/// let layer = DeadLettersLayer::new(MemoryDeadLetterStore::new(10_000));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct DeadLettersLayer {
    store: Arc<dyn DeadLetterStore>,
}

impl std::fmt::Debug for DeadLettersLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeadLettersLayer")
    }
}

impl DeadLettersLayer {
    /// Records final failures in `store`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use syncbus_workflow::DeadLettersLayer;
    /// use syncbus_storage::MemoryDeadLetterStore;
    /// let store = Arc::new(MemoryDeadLetterStore::new(1_000));
    /// let layer = DeadLettersLayer::new(store.clone());
    /// # let _ = layer;
    /// assert!(store.is_empty());
    /// ```
    pub fn new(store: impl IntoArc<dyn DeadLetterStore>) -> Self {
        let store = store.into_arc();
        DeadLettersLayer { store }
    }
}

impl<H> Layer<H> for DeadLettersLayer {
    type Handler = DeadLetters<H>;
    fn layer(&self, inner: H) -> DeadLetters<H> {
        DeadLetters {
            inner,
            store: self.store.clone(),
        }
    }
}

/// Records the inner handler's final failure (after any retries) in a dead-letter store,
/// then returns the error. If the store fails too, the failure is logged with the event and
/// counted in `dead_letter_lost`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_storage::MemoryDeadLetterStore;
/// use syncbus_workflow::{handler_fn, Context, DeadLettersLayer, Handler, HandlerError, Layer};
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = Arc::new(MemoryDeadLetterStore::new(100));
/// let h = DeadLettersLayer::new(store.clone()).layer(handler_fn(|_e: Envelope<Ping>, _c| async {
///     Err::<(), _>(HandlerError::permanent("no such account"))
/// }));
/// let bus = Bus::new();
/// let env = Envelope::from_event(Ping);
/// let err = h.call(env.clone(), Context::new(&bus, env.meta())).await.unwrap_err();
/// assert_eq!(err.message(), "no such account"); // the error is still returned
/// assert_eq!(store.len(), 1); // and recorded
/// # }
/// ```
#[derive(Clone)]
pub struct DeadLetters<H> {
    inner: H,
    store: Arc<dyn DeadLetterStore>,
}

impl<H> std::fmt::Debug for DeadLetters<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeadLetters")
    }
}

impl<P: Storable, H: Handler<P>> Handler<P> for DeadLetters<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        let keep = env.clone();
        match self.inner.call(env, ctx.clone()).await {
            Ok(()) => Ok(()),
            Err(err) => {
                record(&*self.store, &keep, &ctx, &err).await;
                Err(err)
            }
        }
    }
}

/// Records one failure; shared by the layer, the resequence layer's released events and the
/// source runner. `true` when the record is in the store (the runner settles only then).
pub(crate) async fn record<P: Storable>(
    store: &dyn DeadLetterStore,
    env: &Envelope<P>,
    ctx: &Context,
    err: &HandlerError,
) -> bool {
    let mut chain = err.chain();
    let envelope = match P::to_stored(env) {
        Ok(e) => e,
        Err(e) => {
            chain.push(format!("the payload could not be stored: {e}"));
            Envelope::new(env.meta().clone(), Bytes::new())
        }
    };
    record_stored(store, envelope, ctx, err.kind(), chain).await
}

/// Records a failure whose event is already bytes (a stored or foreign envelope that may
/// not even decode).
pub(crate) async fn record_stored(
    store: &dyn DeadLetterStore,
    envelope: Envelope<Bytes>,
    ctx: &Context,
    kind: ErrorKind,
    chain: Vec<String>,
) -> bool {
    // Without a retry layer no attempt noted its failure: this one is first and last.
    let (first, last) = ctx.failures().unwrap_or_else(|| {
        let now = Timestamp::now();
        (now, now)
    });
    let event = envelope.meta().id().clone();
    let error = chain.first().cloned().unwrap_or_default();
    let record = DeadLetterRecord {
        id: crate::store::DeadLetterId::new(),
        envelope,
        subscription: ctx.subscription().to_owned(),
        handler: ctx.handler_name().to_owned(),
        error_kind: kind,
        error_chain: chain,
        attempts: ctx.attempt().max(1),
        first_failure: first,
        last_failure: last,
    };
    let id = record.id.clone();
    match store.put(record).await {
        Ok(()) => {
            ctx.bump(Stat::DeadLettered);
            tracing::warn!(
                subscription = ctx.subscription(),
                %event,
                dead_letter = %id,
                %error,
                "dead-lettered"
            );
            true
        }
        Err(e) => {
            ctx.bump(Stat::DeadLetterLost);
            tracing::error!(
                subscription = ctx.subscription(),
                %event,
                %error,
                store_error = %e,
                "the dead-letter store failed: the failed event is only in this log"
            );
            false
        }
    }
}
