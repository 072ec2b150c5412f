//! One devbox at a time places shared GPUs on a swarm. Two that read the GPUs' use at once
//! would each see the same free shares and together put more runs on a GPU than asked (several
//! people on one lab's swarm). The lock is a swarm config, a name the managers' store holds
//! once: taken around reading the use and creating the runs placed from it, and taken over
//! when this devbox has seen it held (by a killed one) for longer than [`STALE`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::SwarmError;
use crate::engine::Engine;
use crate::labels;
use crate::printer::Printer;

/// The config's name.
pub(crate) const LOCK: &str = "devbox-gpu-placement";

/// Placing and creating a 300-point sweep takes about a second: a lock this old is left over.
pub(crate) const STALE: Duration = Duration::from_secs(120);

const RETRY: Duration = Duration::from_millis(200);

/// The label that says who holds the lock.
const HOLDER: &str = "io.devbox.lock.holder";

/// The lock, held until [`PlacementLock::release`].
#[derive(Debug)]
pub(crate) struct PlacementLock {
    id: String,
}

impl PlacementLock {
    /// Takes the lock of the swarm `engine` manages, waiting while another devbox holds it.
    pub(crate) async fn take(engine: &Engine, printer: Printer) -> Result<Self, SwarmError> {
        let holder = format!(
            "{} on {}, pid {}",
            crate::host::login_name(),
            crate::host::hostname(),
            std::process::id()
        );
        let labels = HashMap::from([labels::managed(), (HOLDER.to_string(), holder.clone())]);
        let mut waited = false;
        let mut seen: Option<(String, Instant)> = None;
        loop {
            if let Some(id) = engine.create_config(LOCK, &holder, labels.clone()).await? {
                return Ok(PlacementLock { id });
            }
            let Some(held) = engine.inspect_config(LOCK).await? else {
                continue;
            };
            let other = held
                .spec
                .as_ref()
                .and_then(|spec| spec.labels.as_ref())
                .and_then(|labels| labels.get(HOLDER))
                .cloned()
                .unwrap_or_else(|| "someone".to_string());
            // Timed by this machine's clock from when it first saw this lock: the manager's
            // clock, which stamped the lock, may be another.
            let id = held.id.clone().unwrap_or_default();
            match &seen {
                Some((seen_id, since)) if *seen_id == id && since.elapsed() > STALE => {
                    printer.note(format!(
                        "took over the swarm's GPU placement lock, held by {other} for more \
                         than {} s",
                        STALE.as_secs()
                    ));
                    engine.remove_config(&id).await?;
                    seen = None;
                    continue;
                }
                Some((seen_id, _)) if *seen_id == id => {}
                _ => seen = Some((id, Instant::now())),
            }
            if !waited {
                printer.progress(format!(
                    "waiting for another devbox placing shared GPUs ({other}); should it be gone, \
                     `docker config rm {LOCK}` frees the lock, or it is taken over after {} s",
                    STALE.as_secs()
                ));
                waited = true;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    pub(crate) async fn release(self, engine: &Engine) -> Result<(), SwarmError> {
        Ok(engine.remove_config(&self.id).await?)
    }
}
