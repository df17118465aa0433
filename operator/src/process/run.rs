//! Running the operator: wait for the CRDs, win the leader election (when enabled), start the caches and both
//! controllers, serve the admin endpoints, stop cleanly.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::{Customer, ResourceStatus, Tenant};
use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::cluster::echo::{Echoes, Superseded};
use crate::cluster::index::Resources;
use crate::cluster::leader::{Elector, LeaseConfig};
use crate::cluster::observe::{self, Owner, Triggers};
use crate::cluster::pace::{self, Pacer};
use crate::metrics::Metrics;
use crate::pipeline::context::Context;
use crate::pipeline::managed::Managed;
use crate::pipeline::reconcile;
use crate::process::admin::{self, AdminState};
use crate::process::crd_wait::{self, CrdWaitError};
use crate::settings::Settings;

/// How long the controllers wait for more changes of one object before reconciling it.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// How many objects each controller reconciles at once. More only queues requests at the API server.
const CONCURRENCY: u16 = 16;

/// How the operator runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the gateway, DNS and Postgres are.
    pub settings: Settings,
    /// Leader election; `None` runs the controllers at once (a single replica).
    pub leader_election: Option<LeaseConfig>,
    /// How many reconciles of a full pass (after a start or a relist) may be pending at once; `None` for
    /// the default.
    pub pass_window: Option<usize>,
}

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The CRDs could not be checked.
    #[error(transparent)]
    CrdWait(#[from] CrdWaitError),
    /// This replica could not renew its lease in time and stopped reconciling.
    #[error("lost the leader lease {0}: stopped so that only one replica reconciles")]
    LostLeadership(String),
}

impl RunError {
    /// A fixed category for metrics labels and events.
    pub fn category(&self) -> &'static str {
        match self {
            RunError::CrdWait(e) => e.category(),
            RunError::LostLeadership(_) => "lost_leadership",
        }
    }
}

/// Runs the operator until `shutdown` completes: serves `/metrics`, `/livez` and `/readyz` on `admin`, waits for
/// the CRDs and, if configured, the leader lease, then runs the Tenant and Customer controllers. In-flight
/// reconciles finish before it returns.
pub async fn run(
    client: Client,
    admin: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopper = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopper.send(true);
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
        Some(Ok(())) => info!("CRDs established"),
    }

    let elector = options
        .leader_election
        .clone()
        .map(|config| Elector::new(client.clone(), config));
    if let Some(elector) = &elector {
        info!(lease = %elector.config().name, identity = %elector.config().identity, "waiting to lead");
        let acquired = tokio::select! {
            () = acquire(elector, &state.ready) => true,
            () = stopped() => false,
        };
        if !acquired {
            let _ = admin_task.await;
            return Ok(());
        }
        state.ready.store(false, Ordering::Release);
        metrics.set_leader(true);
        info!(identity = %elector.config().identity, "became the leader");
    }

    // Leadership watchdog: renews the lease and stops everything if renewals fail past the deadline.
    let (lost_tx, mut lost_rx) = watch::channel(None::<String>);
    let renewer = elector.clone().map(|elector| {
        let stop = stop_tx.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut last_renewed = Instant::now();
            loop {
                tokio::time::sleep(elector.config().retry).await;
                match elector.try_lead().await {
                    Ok(true) => last_renewed = Instant::now(),
                    Ok(false) => {
                        let _ = lost_tx.send(Some(elector.config().name.clone()));
                        break;
                    }
                    Err(err) => warn!(error = %err, "renewing the leader lease failed"),
                }
                if last_renewed.elapsed() > elector.config().renew_deadline {
                    let _ = lost_tx.send(Some(elector.config().name.clone()));
                    break;
                }
            }
            metrics.set_leader(false);
            let _ = stop.send(true);
        })
    });

    let (tenant_tx, tenant_rx) = mpsc::unbounded();
    let (customer_tx, customer_rx) = mpsc::unbounded();
    let triggers = Triggers {
        tenants: tenant_tx,
        customers: customer_tx,
        pass: Pacer::new(options.pass_window.unwrap_or(pace::WINDOW)),
    };
    let (stores, watches) = observe::start(&client, &triggers);

    let index = Resources::default();
    let writes = Writes::default();
    let (tenant_store, tenants, customer_store, customers) = resources(&client, &triggers, &index, &writes);
    let tenants = Controller::for_stream(tenants, tenant_store.clone()).reconcile_on(tenant_rx);
    let customers = Controller::for_stream(customers, customer_store.clone()).reconcile_on(customer_rx);

    let recorder = Recorder::new(client.clone(), Reporter::from("bulkhead-operator"));
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics,
        settings: options.settings.clone(),
        stores: stores.clone(),
        tenants: tenant_store.clone(),
        customers: customer_store.clone(),
        resources: index,
        recorder,
        database: options
            .settings
            .database
            .clone()
            .map(crate::pipeline::database::Database::new),
        pass: triggers.pass.clone(),
        echoes: writes.echoes,
        statuses: writes.statuses,
    });
    let watch_tasks: Vec<_> = watches.into_iter().map(tokio::spawn).collect();
    // Reconciling against a half-filled cache would take every object not yet listed for a deleted one and
    // write it again; the controllers start only once the managed objects are all listed.
    let cached = tokio::select! {
        () = observe::synced(&stores) => true,
        () = stopped() => false,
    };
    if !cached {
        for task in watch_tasks {
            task.abort();
        }
        let _ = admin_task.await;
        return Ok(());
    }
    let readiness = tokio::spawn(async move {
        if observe::store_synced(&tenant_store).await && observe::store_synced(&customer_store).await {
            state.ready.store(true, Ordering::Release);
            info!("caches synced; ready");
        }
    });
    info!("managed objects cached; starting controllers");
    let to_controllers = triggers.clone();
    let gauge = ctx.metrics.clone();
    let pass = tokio::spawn(triggers.pass.clone().run(
        move |owner| to_controllers.send(owner),
        move |waiting| gauge.set_pass_waiting(waiting),
    ));
    let sweeper = tokio::spawn(crate::pipeline::database::sweep_grants(ctx.clone(), triggers));
    tokio::join!(
        drive(tenants, ctx.clone(), stopped()),
        drive(customers, ctx, stopped())
    );
    readiness.abort();
    sweeper.abort();
    pass.abort();
    for task in watch_tasks {
        task.abort();
    }
    let lost = lost_rx.borrow_and_update().clone();
    if let Some(renewer) = renewer {
        renewer.abort();
    }
    if let Some(name) = lost {
        error!(lease = %name, "lost the leader lease; stopping");
        admin_task.abort();
        return Err(RunError::LostLeadership(name));
    }
    if let Some(elector) = &elector
        && let Err(err) = elector.release().await
    {
        warn!(error = %err, "could not release the leader lease; a standby takes over when it expires");
    }
    let _ = admin_task.await;
    info!("controllers stopped");
    Ok(())
}

/// Tries for the lease until this replica holds it. Meanwhile the replica is a standby: ready (a warm spare, so
/// a Deployment of several replicas is fully available and a PodDisruptionBudget counts it) for as long as its
/// last look at the lease succeeded.
async fn acquire(elector: &Elector, ready: &AtomicBool) {
    loop {
        match elector.try_lead().await {
            Ok(true) => return,
            Ok(false) => ready.store(true, Ordering::Release),
            Err(err) => {
                ready.store(false, Ordering::Release);
                warn!(error = %err, "trying to acquire the leader lease failed");
            }
        }
        tokio::time::sleep(elector.config().retry).await;
    }
}

/// What the operator's own writes of Tenants and Customers left for their watches to match.
#[derive(Clone, Default)]
struct Writes {
    echoes: Echoes,
    statuses: Superseded<ResourceStatus>,
}

/// A watch of one kind's changed objects, as the controllers take them.
type Changes<K> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<K, watcher::Error>> + Send>>;

/// One watch and one cache per kind, shared by the controller and the triggers between the kinds: a Tenant
/// waits on its Customers (deletion), a Customer on its Tenant (readiness, quota). The caches keep what
/// reconciling reads, without the field-manager bookkeeping; `index` follows both.
fn resources(
    client: &Client,
    triggers: &Triggers,
    index: &Resources,
    writes: &Writes,
) -> (Store<Tenant>, Changes<Tenant>, Store<Customer>, Changes<Customer>) {
    let config = watcher::Config::default().any_semantic();
    let (tenant_store, tenant_writer) = reflector::store::<Tenant>();
    let (customer_store, customer_writer) = reflector::store::<Customer>();
    let tenant_index = index.clone();
    let to_customers = triggers.clone();
    let cache = tenant_store.clone();
    let to_tenants = triggers.clone();
    let tenant_writes = writes.clone();
    let tenants = watcher::watcher(Api::<Tenant>::all(client.clone()), config.clone())
        .modify(observe::lean)
        .reflect(tenant_writer)
        .inspect_ok(move |event| {
            tenant_index.tenant_event(event);
            if let Some(tenant) = changed(event) {
                tenant_index
                    .customers_of(&tenant.name_any())
                    .into_iter()
                    .for_each(|c| to_customers.send(Owner::Customer(c)));
            }
        })
        .try_filter_map(move |event| {
            futures::future::ready(Ok(paced(event, &cache, &to_tenants, &tenant_writes)))
        })
        .boxed();
    let to_tenant = triggers.clone();
    let cache = customer_store.clone();
    let to_customers = triggers.clone();
    let customer_writes = writes.clone();
    let customer_index = index.clone();
    let customers = watcher::watcher(Api::<Customer>::all(client.clone()), config)
        .modify(observe::lean)
        .reflect(customer_writer)
        .inspect_ok(move |event| {
            customer_index.customer_event(event);
            if let Some(customer) = changed(event) {
                to_tenant.send(Owner::Tenant(customer.spec.tenant_ref.clone()));
            }
        })
        .try_filter_map(move |event| {
            futures::future::ready(Ok(paced(event, &cache, &to_customers, &customer_writes)))
        })
        .boxed();
    (tenant_store, tenants, customer_store, customers)
}

/// The object a change (not a list) is about.
fn changed<K>(event: &watcher::Event<K>) -> Option<&K> {
    match event {
        watcher::Event::Apply(object) | watcher::Event::Delete(object) => Some(object),
        _ => None,
    }
}

/// What a controller's own watch hands it: each change at once, except the echoes of the operator's own writes
/// (its finalizer, its status); a completed (re)list as a full pass of everything cached. Resources whose
/// status already describes their spec join the paced pass; those that do not (created, changed or deleted
/// while the operator was not watching) are changes, and go first. So a Tenant created during a restart's pass
/// never waits for the whole pass.
fn paced<K: Managed>(
    event: watcher::Event<K>,
    cache: &Store<K>,
    triggers: &Triggers,
    writes: &Writes,
) -> Option<K> {
    let uid = |object: &K| object.meta().uid.clone().unwrap_or_default();
    match event {
        watcher::Event::Apply(object) => {
            let (uid, version) = (uid(&object), object.meta().resource_version.as_deref());
            writes.statuses.seen(&uid, version);
            (!writes.echoes.is_echo(&uid, version)).then_some(object)
        }
        watcher::Event::Delete(object) => {
            writes.echoes.forget(&uid(&object));
            writes.statuses.forget(&uid(&object));
            None
        }
        watcher::Event::Init => {
            writes.echoes.clear();
            None
        }
        watcher::Event::InitDone => {
            let (settled, changed): (Vec<_>, Vec<_>) =
                cache.state().into_iter().partition(|o| settled(o.as_ref()));
            changed.iter().for_each(|o| triggers.send(o.owner()));
            triggers.pass(settled.iter().map(|o| o.owner()));
            None
        }
        watcher::Event::InitApply(_) => None,
    }
}

/// Whether the resource's status describes its current spec and it is not being deleted.
fn settled<K: Managed>(object: &K) -> bool {
    object.meta().deletion_timestamp.is_none()
        && object.meta().generation.is_some()
        && object.current_status().and_then(|s| s.observed_generation) == object.meta().generation
}

async fn drive<K: Managed>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        // Creating one Tenant's objects fires a burst of watch events for it; wait for the burst to end and
        // reconcile once instead of once per event.
        .with_config(
            kube::runtime::controller::Config::default()
                .debounce(DEBOUNCE)
                .concurrency(CONCURRENCY),
        )
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                debug!(controller = K::CONTROLLER, error = %err, "controller event");
            }
        })
        .await;
}
