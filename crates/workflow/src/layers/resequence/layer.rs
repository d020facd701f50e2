//! The resequencer's layer.

use std::sync::Arc;

use super::config::ResequenceConfig;
use super::service::Resequence;
use super::state::State;
use crate::layer::Layer;

/// Makes [`Resequence`] handlers; each handler it makes keeps its own per-entity state.
///
/// # Examples
///
/// ```
/// use syncbus_core::{EntityId, Envelope, Event};
/// use syncbus_workflow::{handler_fn, Context, Handler, Layer, ResequenceConfig, ResequenceLayer};
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct Moved { version: u64 }
/// impl Event for Moved {
///     const TYPE: &'static str = "moved";
///     fn entity_id(&self) -> Option<EntityId> { Some(EntityId::from(1u64)) }
///     fn version(&self) -> Option<u64> { Some(self.version) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let s = seen.clone();
/// let h = ResequenceLayer::new(ResequenceConfig::new()).layer(handler_fn(move |e: Envelope<Moved>, _c| {
///     s.lock().unwrap().push(e.payload().version);
///     async { Ok(()) }
/// }));
/// let bus = syncbus_core::Bus::new();
/// for version in [1, 3, 2] {
///     let env = Envelope::from_event(Moved { version });
///     h.call(env.clone(), Context::new(&bus, env.meta())).await?;
/// }
/// assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]); // 3 waited for 2
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ResequenceLayer {
    cfg: ResequenceConfig,
}

impl ResequenceLayer {
    /// A layer resequencing by `cfg`; the same as [`ResequenceConfig::layer`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{ResequenceConfig, ResequenceLayer};
    /// let layer = ResequenceLayer::new(ResequenceConfig::new().max_held(100));
    /// # let _ = layer;
    /// ```
    pub fn new(cfg: ResequenceConfig) -> ResequenceLayer {
        ResequenceLayer { cfg }
    }
}

impl<H> Layer<H> for ResequenceLayer {
    type Handler = Resequence<H>;
    fn layer(&self, inner: H) -> Resequence<H> {
        Resequence {
            inner: Arc::new(inner),
            state: Arc::new(State::new(self.cfg.clone())),
        }
    }
}

impl ResequenceConfig {
    /// This as a layer.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::ResequenceConfig::new().layer();
    /// # let _ = layer;
    /// ```
    pub fn layer(self) -> ResequenceLayer {
        ResequenceLayer::new(self)
    }
}
