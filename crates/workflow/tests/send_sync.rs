//! The public handles are `Send + Sync`, checked at compile time.

use syncbus_storage::*;
use syncbus_workflow::*;

fn send_sync<T: Send + Sync>() {}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Ev;
impl syncbus_core::Event for Ev {
    const TYPE: &'static str = "ev";
}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Workflow>();
    send_sync::<WorkflowSubscription>();
    send_sync::<WorkflowSubscribe<Ev>>();
    send_sync::<RunningSaga>();
    send_sync::<Saga<Ev>>();
    send_sync::<Context>();
    send_sync::<HandlerError>();
    send_sync::<Chains>();
    send_sync::<ChainNode>();
    send_sync::<DedupConfig>();
    send_sync::<ResequenceConfig>();
    send_sync::<RetryPolicy>();
    send_sync::<CircuitBreakerConfig>();
    send_sync::<RateLimitConfig>();
    send_sync::<DeadLettersLayer>();
    send_sync::<DedupLayer>();
    send_sync::<ResequenceLayer>();
    send_sync::<RetryLayer>();
    send_sync::<CircuitBreakerLayer>();
    send_sync::<RateLimitLayer>();
    send_sync::<TimeoutLayer>();
    send_sync::<ConcurrencyLimitLayer>();
    send_sync::<EmitLayer>();
    send_sync::<DeadLetters<()>>();
    send_sync::<Dedup<()>>();
    send_sync::<Resequence<()>>();
    send_sync::<Retry<()>>();
    send_sync::<CircuitBreaker<()>>();
    send_sync::<RateLimit<()>>();
    send_sync::<Timeout<()>>();
    send_sync::<ConcurrencyLimit<()>>();
    send_sync::<Emit<()>>();
    send_sync::<Redrive>();
    send_sync::<StoreError>();
    send_sync::<MemoryDedupStore>();
    send_sync::<MemoryDeadLetterStore>();
    send_sync::<MemorySagaStore>();
    send_sync::<DeadLetterRecord>();
    send_sync::<SagaInstance>();
    send_sync::<std::sync::Arc<dyn DedupStore>>();
    send_sync::<std::sync::Arc<dyn DeadLetterStore>>();
    send_sync::<std::sync::Arc<dyn SagaStore>>();
}
