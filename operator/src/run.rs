//! Running the operator: wait for the CRDs, start both controllers, serve the admin endpoints, stop cleanly.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use futures::StreamExt;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::admin::{self, AdminState};
use crate::crd_wait::{self, CrdWaitError};
use crate::managed::Managed;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context};

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The CRDs could not be checked.
    #[error(transparent)]
    CrdWait(#[from] CrdWaitError),
}

impl RunError {
    /// A fixed category for metrics labels and events.
    pub fn category(&self) -> &'static str {
        match self {
            RunError::CrdWait(e) => e.category(),
        }
    }
}

/// Runs the operator until `shutdown` completes: serves `/metrics`, `/livez` and `/readyz` on `admin`, waits for
/// the CRDs, then runs the Tenant and Customer controllers. In-flight reconciles finish before it returns.
pub async fn run(
    client: Client,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AdminState::new(metrics.clone()));
    let admin_task = tokio::spawn(admin::serve(admin, state.clone(), stopped()));

    let waited = tokio::select! {
        waited = crd_wait::wait_established(&client) => Some(waited),
        () = stopped() => None,
    };
    match waited {
        None => {
            let _ = admin_task.await;
            return Ok(());
        }
        Some(Err(err)) => {
            admin_task.abort();
            return Err(err.into());
        }
        Some(Ok(())) => info!("CRDs established; starting controllers"),
    }

    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics,
    });
    let tenants = controller::<Tenant>(&client);
    let customers = controller::<Customer>(&client);
    let (tenant_store, customer_store) = (tenants.store(), customers.store());
    let readiness = tokio::spawn(async move {
        if synced(&tenant_store).await && synced(&customer_store).await {
            state.ready.store(true, Ordering::Release);
            info!("caches synced; ready");
        }
    });
    tokio::join!(
        drive(tenants, ctx.clone(), stopped()),
        drive(customers, ctx, stopped())
    );
    readiness.abort();
    let _ = admin_task.await;
    info!("controllers stopped");
    Ok(())
}

/// Waits until a controller's cache has synced. The store's readiness signal wakes only its most recent waiter
/// (the controller's own runner polls it too), so poll again on a short timer instead of waiting once.
async fn synced<K: Managed>(store: &Store<K>) -> bool {
    loop {
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            return result.is_ok();
        }
    }
}

fn controller<K: Managed>(client: &Client) -> Controller<K> {
    Controller::new(
        Api::<K>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
}

async fn drive<K: Managed>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                debug!(controller = K::CONTROLLER, error = %err, "controller event");
            }
        })
        .await;
}
