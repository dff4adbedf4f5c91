//! The one place where table errors become reply statuses.

use crate::dict::DictError;
use crate::protocol::Status;

/// Postfix's rule: RETRY for temporary errors, CONFIG for anything else.
/// An unsupported operation (a fatal exit in Postfix 3.7) becomes CONFIG: the
/// client reports an error for that one request and does not retry forever.
pub(crate) fn of_error(e: &DictError) -> Status {
    match e {
        // Served again on a thread that waits; RETRY if it ever got here.
        DictError::Retry(_) | DictError::WouldBlock => Status::Retry,
        DictError::Config(_) | DictError::Unsupported(_) => Status::Config,
    }
}

/// Result of lookup/update/delete: found/done → OK, not found → NOKEY.
pub(crate) fn of_bool(found: bool) -> Status {
    if found {
        Status::Ok
    } else {
        Status::NoKey
    }
}
