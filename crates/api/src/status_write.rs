//! Writing a Backup's status the operator's way: the CRD has no status subresource, so a
//! write is a full-object update guarded by resourceVersion, retried on conflict after
//! re-reading.

use kube::Api;
use kube::api::PostParams;

use crate::Backup;

/// Attempts before giving up on conflicts.
const MAX_CONFLICTS: usize = 10;

/// Read the Backup, let `mutate` change it (returning whether it changed anything), and
/// write it back if so. On a conflict, re-read and re-apply. Returns the object as stored
/// (`None` if it is gone).
///
/// # Errors
/// API errors other than conflicts, or too many conflicts.
pub async fn update_backup<F>(
    api: &Api<Backup>,
    name: &str,
    mutate: F,
) -> Result<Option<Backup>, kube::Error>
where
    F: FnMut(&mut Backup) -> bool,
{
    update_backup_from(api, name, None, mutate).await
}

/// [`update_backup`], starting from `known` (a copy believed current, e.g. the one this
/// writer stored last) instead of a read: one request instead of two when it is current,
/// and a conflict, a read and a retry when it is not — resourceVersion keeps it exact.
///
/// # Errors
/// As [`update_backup`].
pub async fn update_backup_from<F>(
    api: &Api<Backup>,
    name: &str,
    known: Option<Backup>,
    mut mutate: F,
) -> Result<Option<Backup>, kube::Error>
where
    F: FnMut(&mut Backup) -> bool,
{
    let mut conflicts = 0;
    let mut known = known;
    loop {
        let mut obj = match known.take() {
            Some(obj) => obj,
            None => match api.get_opt(name).await? {
                Some(obj) => obj,
                None => return Ok(None),
            },
        };
        if !mutate(&mut obj) {
            return Ok(Some(obj));
        }
        match api.replace(name, &PostParams::default(), &obj).await {
            Ok(stored) => return Ok(Some(stored)),
            Err(kube::Error::Api(e)) if e.code == 409 && conflicts < MAX_CONFLICTS => {
                conflicts += 1
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
