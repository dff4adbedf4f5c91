//! STUB: being written.
use super::{Dict, OpenError, OpenRequest};
pub fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    Err(OpenError::new(format!("{}: not yet implemented", req.full_name())))
}
