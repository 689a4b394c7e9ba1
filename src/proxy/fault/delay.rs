//! `delay`: hold the request before forwarding it, or its response before returning it.

use super::super::{Fired, Post};
use super::Hold;

pub(in crate::proxy) async fn fire(request: Option<Hold>, response: Option<Hold>) -> Fired {
    if let Some(h) = request {
        h.wait().await;
    }
    Fired::Forward(response.map(Post::Hold))
}
