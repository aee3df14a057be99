//! What a connection borrows from its worker while it serves a request (head boxes, buffers,
//! policy state) and hands back when it goes idle.

use std::cell::RefCell;

use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::policy::RequestState;

/// Spare buffers kept per worker: a connection borrows them while it serves a request and hands
/// them back when it goes idle, so an idle keep-alive connection pins none of them.
pub const SPARE_BUFFERS_MAX: usize = 256;
/// A buffer that grew past this (a large head, a buffered body) is freed, not kept as a spare.
pub const SPARE_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// What a connection borrows from its worker while it serves a request (style item 3: per-core
/// state, never shared across cores).
#[derive(Debug, Default)]
#[allow(clippy::vec_box)] // reason: the boxes are what connections hold; pooling them moves pointers, not kilobytes
pub(crate) struct Spares {
    request_heads: RefCell<Vec<Box<RequestHead>>>,
    response_heads: RefCell<Vec<Box<ResponseHead>>>,
    buffers: RefCell<Vec<Vec<u8>>>,
    policy_states: RefCell<Vec<Box<RequestState>>>,
}

impl Spares {
    /// A spare request-head box, if there is one.
    pub(crate) fn request_head(&self) -> Option<Box<RequestHead>> {
        self.request_heads.borrow_mut().pop()
    }

    /// A spare response-head box, if there is one.
    pub(crate) fn response_head(&self) -> Option<Box<ResponseHead>> {
        self.response_heads.borrow_mut().pop()
    }

    /// A policy state (reset by the request that takes it).
    pub(crate) fn policy_state(&self) -> Box<RequestState> {
        self.policy_states.borrow_mut().pop().unwrap_or_else(|| Box::new(RequestState::new()))
    }

    /// An empty buffer (with capacity, when a spare one is there).
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.buffers.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps what a connection no longer needs, within [`SPARE_BUFFERS_MAX`] of each kind.
    pub(crate) fn put_back(
        &self,
        request_head: Option<Box<RequestHead>>,
        response_head: Option<Box<ResponseHead>>,
        policy_state: Box<RequestState>,
        buffers: [Vec<u8>; 2],
    ) {
        keep(&self.policy_states, Some(policy_state));
        keep(&self.request_heads, request_head);
        keep(&self.response_heads, response_head);
        for mut buffer in buffers {
            if buffer.capacity() > 0 && buffer.capacity() <= SPARE_BUFFER_BYTES_MAX {
                buffer.clear();
                keep(&self.buffers, Some(buffer));
            }
        }
    }
}

/// Keeps `spare` in `spares` unless [`SPARE_BUFFERS_MAX`] are kept already.
fn keep<T>(spares: &RefCell<Vec<T>>, spare: Option<T>) {
    let mut spares = spares.borrow_mut();
    if spares.len() < SPARE_BUFFERS_MAX {
        spares.extend(spare);
    }
}
